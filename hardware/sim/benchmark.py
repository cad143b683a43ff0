"""Render timing of the simulator (for `slidescan bench render`).

Cold: the first frame of a fresh simulator (specimen generation, the slabs' FFTs, and the OTF
lattice around focus computed for the first time). Cold field: a new field position once the
OTF lattice is warm (what a new tile of a scan costs). Warm new z: the same field at focus
positions not rendered before (OTF look-ups, one multiply per slab and colour, three inverse
FFTs, the sensor model). Warm same z: a repeat of the last frame's settings. The optics-only
and sensor-only parts of a warm new-z frame are reported separately. Times are wall clock;
`warm_new_z_cpu_ms` is the CPU time of the same frames summed over threads, a figure that
other processes competing for the cores do not inflate.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from slidescan.hardware.sim.config import SimCameraConfig, SimConfig

_cpu: list[float] = []


def _ms(fn) -> float:
    """Wall milliseconds of fn(); its CPU milliseconds (all threads) go to `_cpu`."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    _cpu.append((time.process_time() - c0) * 1000.0)
    return (time.perf_counter() - t0) * 1000.0


def render_benchmark(
    objective: str = "20x/0.75", size: int = 1024, repeats: int = 10, psf: str = "pupil"
) -> dict[str, Any]:
    """Milliseconds per frame (cold, cold field, warm new z, warm same z) and cache stats."""
    from slidescan.hardware.sim.microscope import build_simulator

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    config = SimConfig(
        objective=objective,
        seed=0,
        camera=SimCameraConfig(width=size, height=size),
        optics={"psf": psf},
    )
    sim = build_simulator(config)
    x0, y0, x1, y1 = sim.slide_bounds_um
    x, y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    rng = np.random.default_rng(0)

    focus = [0.0]

    def first() -> None:
        focus[0] = sim.true_focus_um(x, y)
        sim.render(x, y, focus[0], rng=rng)

    _cpu.clear()
    cold = _ms(first)
    truth = focus[0]
    fw = sim.field_of_view_um[0]
    cold_field = _ms(
        lambda: sim.render(x + 1.5 * fw, y, sim.true_focus_um(x + 1.5 * fw, y), rng=rng)
    )
    cold_cpu = list(_cpu)
    # defocus offsets across +-1.5 um that are never twice the same
    offsets = -1.5 + 3.0 * (np.arange(repeats) + 0.5) / repeats + 0.0137
    before = sim.renderer.otf.cache_info()
    _cpu.clear()
    new_z = [_ms(lambda d=d: sim.render(x, y, truth + d, rng=rng)) for d in offsets]
    new_z_cpu = list(_cpu)
    after = sim.renderer.otf.cache_info()
    same_z = [_ms(lambda: sim.render(x, y, truth + offsets[-1], rng=rng)) for _ in range(repeats)]
    optics = [_ms(lambda d=d: sim.render_intensity(x, y, truth + d + 0.0071)) for d in offsets]
    intensity = sim.render_intensity(x, y, truth)
    sensor = [
        _ms(lambda: sim.sensor.digitise(intensity, sim.camera.exposure_ms, 1.0, rng))
        for _ in range(repeats)
    ]
    med = statistics.median
    return {
        "benchmark": "render",
        "objective": objective,
        "size": size,
        "psf": psf,
        "repeats": repeats,
        "layers": sim.specimen.n_layers,
        "padded_size": list(sim.renderer.padded),
        "cold_ms": cold,
        "cold_field_ms": cold_field,
        "cold_cpu_ms": cold_cpu[0],
        "cold_field_cpu_ms": cold_cpu[1],
        "warm_new_z_ms": med(new_z),
        "warm_new_z_max_ms": max(new_z),
        "warm_new_z_cpu_ms": med(new_z_cpu),
        "fft_workers": sim.renderer.workers,
        "warm_same_z_ms": med(same_z),
        "optics_new_z_ms": med(optics),
        "sensor_ms": med(sensor),
        "otf_cache": sim.render_stats()["otf_cache"],
        "otf_misses_during_new_z": after["misses"] - before["misses"],
        "field_cache": sim.render_stats()["field_cache"],
    }
