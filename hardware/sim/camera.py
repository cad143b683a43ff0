"""Simulated camera: the sensor model (photons, noise, ADC, vignetting, JPEG) and the
`CameraBase` that snaps what the stage is looking at.

Sensor chain for a transmission image T (1 = clear glass):

1. photo-electrons, expected: e = T * vignetting(r) * photon_flux_e_per_ms * exposure_ms
   (signal scales with exposure); a monochrome sensor sees the mean of the RGB bands;
2. noise (seeded): shot noise (Poisson) plus Gaussian read noise. Where every pixel
   expects at least 20 electrons the shot noise is drawn from its normal approximation
   N(e, e), merged with the read noise into one normal draw of variance e + read_noise^2;
   otherwise the dim pixels get exact Poisson draws plus read noise. The standard normal
   deviates come from inverse-CDF sampling at 2^16 equiprobable levels (exact quantiles of
   the normal, cut at 4.2 sigma), three times faster than numpy's ziggurat for a frame;
3. full well: electrons clip at `full_well_e`;
4. ADC: adu = e * (2^bits - 1) / full_well * gain + black_level, rounded, clipped; 8 bits
   give uint8, more give uint16 holding 0 .. 2^bits - 1;
5. with a colour filter array (`bayer`), steps 2-4 act on the mosaic (one colour per pixel)
   and the frame is then demosaiced to RGB (`hardware/sim/bayer.py`);
6. optional JPEG round trip (`cv2.imencode`) at `jpeg_quality`.

Vignetting follows the cos^4 law, 1 / (1 + (a r)^2)^2, with a chosen so that the corners
lose `vignetting` of the centre's brightness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from scipy.special import ndtri

from slidescan.hardware.base import CameraBase, Position
from slidescan.hardware.clock import Clock
from slidescan.hardware.sim.bayer import demosaic_bilinear, mosaic
from slidescan.hardware.sim.config import SimCameraConfig

#: Below this many expected electrons the shot noise is drawn exactly (Poisson).
EXACT_POISSON_BELOW_E = 20.0


_NORMAL_LEVELS = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16)).astype(np.float32)


class SensorModel:
    """Turns transmission images into digital frames."""

    def __init__(self, config: SimCameraConfig) -> None:
        self.config = config
        self.max_adu = 2**config.bit_depth - 1
        self.dtype = np.dtype(np.uint8 if config.bit_depth == 8 else np.uint16)
        self.vignette = self._vignette(config.height, config.width, config.vignetting)

    @staticmethod
    def _vignette(h: int, w: int, loss: float) -> np.ndarray:
        if loss <= 0:
            return np.ones((h, w), np.float32)
        y = (np.arange(h) - (h - 1) / 2.0)[:, None]
        x = (np.arange(w) - (w - 1) / 2.0)[None, :]
        r = np.hypot(x, y) / np.hypot((w - 1) / 2.0, (h - 1) / 2.0)
        a = np.sqrt((1.0 - loss) ** -0.5 - 1.0)
        return (1.0 / (1.0 + (a * r) ** 2) ** 2).astype(np.float32)

    def expected_electrons(self, transmission: np.ndarray, exposure_ms: float) -> np.ndarray:
        """Mean photo-electrons per pixel -> (H, W, 3) or (H, W) float32."""
        c = self.config
        scale = np.float32(c.photon_flux_e_per_ms * exposure_ms)
        if c.channels == 1:
            e = transmission.mean(axis=2, dtype=np.float32) * self.vignette
        else:
            e = transmission * self.vignette[:, :, None]
        e *= scale
        return e

    def _add_noise(self, e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shot plus read noise on expected electrons `e` (float32, modified in place)."""
        read_var = np.float32(self.config.read_noise_e**2)
        sigma = e + read_var
        np.sqrt(sigma, out=sigma)
        sigma *= standard_normal_fast(rng, e.shape)
        if float(e.min()) >= EXACT_POISSON_BELOW_E:
            e += sigma
            return e
        low = e < EXACT_POISSON_BELOW_E
        lam = e[low]
        e += sigma
        e[low] = rng.poisson(lam).astype(np.float32) + np.float32(
            self.config.read_noise_e
        ) * standard_normal_fast(rng, lam.shape)
        return e

    def digitise(
        self,
        transmission: np.ndarray,
        exposure_ms: float,
        gain: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """A camera frame from a transmission image; `rng=None` gives the noise-free frame."""
        c = self.config
        e = self.expected_electrons(transmission, exposure_ms)
        if c.bayer is not None:
            e = mosaic(e, c.bayer)
        np.maximum(e, 0.0, out=e)
        if rng is not None:
            e = self._add_noise(e, rng)
        np.clip(e, 0.0, c.full_well_e, out=e)
        e *= np.float32(self.max_adu / c.full_well_e * gain)
        if c.black_level_adu:
            e += np.float32(c.black_level_adu)
        np.rint(e, out=e)
        np.clip(e, 0, self.max_adu, out=e)
        if c.bayer is not None:
            e = np.rint(demosaic_bilinear(e, c.bayer))
        frame = e.astype(self.dtype)
        if c.jpeg_quality is not None:
            frame = jpeg_round_trip(frame, c.jpeg_quality)
        return frame


def standard_normal_fast(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 deviates by inverse-CDF sampling at 2^16 levels."""
    return np.take(_NORMAL_LEVELS, rng.integers(0, 1 << 16, shape, dtype=np.uint16))


def jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    """Encode an 8-bit frame as JPEG at `quality` and decode it again."""
    bgr = frame[..., ::-1] if frame.ndim == 3 else frame
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    flag = cv2.IMREAD_COLOR if frame.ndim == 3 else cv2.IMREAD_GRAYSCALE
    out = cv2.imdecode(buf, flag)
    return np.ascontiguousarray(out[..., ::-1]) if frame.ndim == 3 else out


#: form_image(x, y, z, exposure_ms, gain, rng) -> (frame, meta)
ImageFormer = Callable[..., tuple[np.ndarray, dict[str, Any]]]


class SimCamera(CameraBase):
    """Snaps the simulated field under the stage's *true* position and stamps the frame with
    the stage's *reported* position. Each snap advances the virtual clock by the exposure
    (or the strobe pulse, with strobed light) plus the readout."""

    #: From 10 µs up to the longest exposure `SimCameraConfig` accepts.
    EXPOSURE_RANGE_MS = (0.01, 10000.0)

    def __init__(
        self,
        config: SimCameraConfig,
        form_image: ImageFormer,
        true_position: Callable[[], Position],
        reported_position: Callable[[], Position],
        pixel_size_um: float,
        clock: Clock,
        seed: int,
        strobe_ms: float | None = None,
    ) -> None:
        super().__init__(
            exposure_ms=config.exposure_ms,
            gain=1.0,
            clock=clock,
            position_source=reported_position,
        )
        self.config = config
        self._form_image = form_image
        self._true_position = true_position
        self._pixel_size_um = float(pixel_size_um)
        self._rng = np.random.default_rng(seed)
        self.strobe_ms = strobe_ms
        self.frames_taken = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.config.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.config.bit_depth == 8 else np.uint16)

    @property
    def pixel_size_um(self) -> float:
        return self._pixel_size_um

    @property
    def frame_time_ms(self) -> float:
        """Clock time one snap takes: exposure (or strobe pulse) plus readout."""
        light = self.strobe_ms if self.strobe_ms is not None else self.exposure_ms
        return light + self.config.readout_ms

    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        if self.exposure_ms <= 0:
            raise ValueError(f"exposure must be positive, got {self.exposure_ms} ms")
        true = self._true_position()
        rng = self._rng if self.config.noise else None
        image, meta = self._form_image(
            true.x, true.y, true.z, exposure_ms=self.exposure_ms, gain=self.gain, rng=rng
        )
        self.clock.sleep(self.frame_time_ms / 1000.0)
        self.frames_taken += 1
        return image, meta

    def _stream_pause(self) -> None:
        if self.config.stream_interval_s > 0:
            time.sleep(self.config.stream_interval_s)
