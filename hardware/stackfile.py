"""Focus-stack files (HDF5): the one module that writes and reads them.

A focus stack is a series of images of one field taken at known focus-drive positions. The
simulator makes them, hardware records them, evaluation and training read them. Layout
(DESIGN.md contract)::

    /                      attrs: format, format_version, software_version, created,
                                  pixel_size_um, na, magnification, immersion_n,
                                  wavelengths_um, wavelength_um, source, source_config
    /stacks/<id>/images    (Z, H, W[, C]) uint8 or uint16, one chunk per plane
    /stacks/<id>/z_um      (Z,) float64, strictly monotonic
    /stacks/<id>/reference (H, W[, C]) float32 on the 0-255 scale, optional: the noise-free
                           in-focus image of the field (a simulator can give it, a real
                           scanner cannot), what an image made from the planes is scored on
    /stacks/<id>           attrs: true_focus_um (where known), x_um, y_um, any extra metadata

`StackWriter` appends stacks one at a time (so a generator can stream them) and writes
atomically: the data goes to a temporary file next to the target that is renamed into place
only when the writer closes cleanly, so an interrupted run never leaves a half file under the
final name. `open_stacks` validates the structure up front (metadata only) and loads each
stack's images only when that stack is asked for.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import h5py
import numpy as np

from slidescan.hardware.optics import REFERENCE_WAVELENGTH_UM, Objective, OpticalPath

FORMAT_NAME = "slidescan-focus-stack"
FORMAT_VERSION = 1
OPTICS_ATTRS = ("pixel_size_um", "na", "magnification", "immersion_n", "wavelengths_um")
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
Compression = Literal["gzip", "lzf"] | None


class StackFileError(ValueError):
    """A focus-stack file is missing, not HDF5, or does not follow the layout."""


class StackOpticsLike(Protocol):
    """The optics numbers a focus-stack file records (an `OpticalPath` satisfies it)."""

    @property
    def pixel_size_um(self) -> float: ...

    @property
    def na(self) -> float: ...

    @property
    def magnification(self) -> float: ...

    @property
    def immersion_n(self) -> float: ...


@dataclass
class FocusStack:
    """One field imaged at a series of z positions.

    `images` is (Z, H, W[, C]); `z_um[i]` is the focus-drive position of plane i; the
    defocus of plane i is `z_um[i] - true_focus_um` (None when the truth is not known).
    `meta` holds the other per-stack attributes (x_um, y_um, specimen, ...).
    """

    id: str
    images: np.ndarray
    z_um: np.ndarray
    true_focus_um: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: the noise-free in-focus image (float32, 0-255, one plane's shape), where known
    reference: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.z_um = np.asarray(self.z_um, dtype=np.float64)
        _check_stack(self.id, self.images.shape, self.images.dtype, self.z_um, self.true_focus_um)
        if self.reference is not None:
            _check_reference(self.id, self.images.shape, self.reference)

    @property
    def defocus_um(self) -> np.ndarray | None:
        return None if self.true_focus_um is None else self.z_um - self.true_focus_um

    @property
    def z_range_um(self) -> tuple[float, float]:
        return float(self.z_um.min()), float(self.z_um.max())

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])


def _check_stack(
    stack_id: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    z_um: np.ndarray,
    true_focus_um: float | None,
) -> None:
    """Raise `StackFileError` with one clear line if a stack breaks the layout."""
    where = f"stack {stack_id!r}"
    if len(shape) not in (3, 4):
        raise StackFileError(f"{where}: images must be (Z, H, W) or (Z, H, W, C), got {shape}")
    if len(shape) == 4 and shape[3] not in (1, 3, 4):
        raise StackFileError(f"{where}: images have {shape[3]} channels; expected 1, 3 or 4")
    if min(shape) < 1:
        raise StackFileError(f"{where}: images have an empty axis, shape {shape}")
    if np.dtype(dtype) not in IMAGE_DTYPES:
        raise StackFileError(f"{where}: images are {np.dtype(dtype)}; expected uint8 or uint16")
    if z_um.ndim != 1:
        raise StackFileError(f"{where}: z_um must be 1-D, got shape {z_um.shape}")
    if z_um.shape[0] != shape[0]:
        raise StackFileError(f"{where}: {shape[0]} image planes but {z_um.shape[0]} z_um values")
    if not np.all(np.isfinite(z_um)):
        raise StackFileError(f"{where}: z_um contains non-finite values")
    if z_um.shape[0] > 1:
        steps = np.diff(z_um)
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise StackFileError(f"{where}: z_um is not strictly monotonic")
    if true_focus_um is not None and not np.isfinite(true_focus_um):
        raise StackFileError(f"{where}: true_focus_um {true_focus_um} is not finite")


def _check_reference(stack_id: str, shape: tuple[int, ...], reference: np.ndarray) -> None:
    if tuple(reference.shape) != tuple(shape[1:]):
        raise StackFileError(
            f"stack {stack_id!r}: reference is {tuple(reference.shape)}, a plane is "
            f"{tuple(shape[1:])}"
        )
    if not np.all(np.isfinite(reference)):
        raise StackFileError(f"stack {stack_id!r}: reference holds non-finite values")


def _attr_value(value: Any) -> Any:
    """Turn an HDF5 attribute into a plain Python value (str, float, int, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_attr(value: Any) -> Any:
    """Make a metadata value storable as an HDF5 attribute (dicts become JSON)."""
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    if value is None:
        raise StackFileError("metadata values must not be None (leave the key out instead)")
    return value


def _software_version() -> str:
    try:
        return importlib.metadata.version("slidescan")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- writing ---------------------------------------------------------------------------------


class StackWriter:
    """Append focus stacks to a new file; the file appears under `path` only on clean close.

    Use as a context manager: on an exception (Ctrl-C included) the temporary file is deleted
    and nothing is left under `path`. `append` returns the id it stored the stack under.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        optics: StackOpticsLike,
        *,
        source: str,
        source_config: Mapping[str, Any] | str | None = None,
        compression: Compression = "gzip",
        compression_level: int = 4,
        overwrite: bool = True,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise StackFileError(f"{self.path} exists; refusing to overwrite it")
        if not self.path.parent.is_dir():
            raise StackFileError(f"folder {self.path.parent} does not exist")
        if compression not in ("gzip", "lzf", None):
            raise StackFileError(f"compression must be gzip, lzf or none, got {compression!r}")
        self._compression = compression
        self._compression_opts = compression_level if compression == "gzip" else None
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._file: h5py.File | None = h5py.File(self._tmp, "w")
        self._stacks = self._file.create_group("stacks", track_order=True)
        self.count = 0

        a = self._file.attrs
        a["format"] = FORMAT_NAME
        a["format_version"] = FORMAT_VERSION
        a["software_version"] = _software_version()
        a["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        a["pixel_size_um"] = float(optics.pixel_size_um)
        a["na"] = float(optics.na)
        a["magnification"] = float(optics.magnification)
        a["immersion_n"] = float(optics.immersion_n)
        wavelengths = getattr(optics, "wavelengths_um", None) or (REFERENCE_WAVELENGTH_UM,)
        a["wavelengths_um"] = np.asarray(wavelengths, dtype=np.float64)
        a["wavelength_um"] = float(getattr(optics, "wavelength_um", REFERENCE_WAVELENGTH_UM))
        a["source"] = str(source)
        if source_config is not None:
            a["source_config"] = (
                source_config if isinstance(source_config, str) else json.dumps(source_config)
            )
        for key, value in (attrs or {}).items():
            a[key] = _to_attr(value)

    def append(
        self,
        images: np.ndarray,
        z_um: np.ndarray | list[float],
        *,
        true_focus_um: float | None = None,
        stack_id: str | None = None,
        reference: np.ndarray | None = None,
        **meta: Any,
    ) -> str:
        """Store one stack; `meta` values (x_um, y_um, ...) become attributes of its group;
        `reference` the noise-free in-focus image (0-255 scale), where known."""
        if self._file is None:
            raise StackFileError("the stack writer is closed")
        images = np.asarray(images)
        z = np.asarray(z_um, dtype=np.float64)
        sid = stack_id if stack_id is not None else f"{self.count:04d}"
        if not sid or "/" in sid:
            raise StackFileError(f"stack id {sid!r} must be non-empty and contain no '/'")
        if sid in self._stacks:
            raise StackFileError(f"stack id {sid!r} is already in the file")
        tf = None if true_focus_um is None else float(true_focus_um)
        _check_stack(sid, images.shape, images.dtype, z, tf)
        if reference is not None:
            reference = np.asarray(reference, np.float32)
            _check_reference(sid, images.shape, reference)

        group = self._stacks.create_group(sid)
        group.create_dataset(
            "images",
            data=images,
            chunks=(1, *images.shape[1:]),
            compression=self._compression,
            compression_opts=self._compression_opts,
            shuffle=self._compression is not None and images.dtype.itemsize > 1,
        )
        group.create_dataset("z_um", data=z)
        if reference is not None:
            group.create_dataset(
                "reference",
                data=reference,
                compression=self._compression,
                compression_opts=self._compression_opts,
                shuffle=self._compression is not None,
            )
        if tf is not None:
            group.attrs["true_focus_um"] = tf
        for key, value in meta.items():
            group.attrs[key] = _to_attr(value)
        self.count += 1
        return sid

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._file is None:
            return self.path
        self._file.close()
        self._file = None
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp made it private; use the usual mode
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Abandon the file: nothing is left under the final name or the temporary one."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def write_stacks(
    path: str | os.PathLike[str],
    stacks: list[FocusStack],
    optics: StackOpticsLike,
    *,
    source: str,
    **kwargs: Any,
) -> Path:
    """Write a list of in-memory stacks in one go (tests, small conversions)."""
    with StackWriter(path, optics, source=source, **kwargs) as writer:
        for s in stacks:
            writer.append(
                s.images,
                s.z_um,
                true_focus_um=s.true_focus_um,
                stack_id=s.id,
                reference=s.reference,
                **s.meta,
            )
    return Path(path)


# -- reading ---------------------------------------------------------------------------------


class StackFile:
    """An open focus-stack file: `optics`, `source`, `len()`, `[i]` / `[id]`, iteration.

    Structure is validated when opening (cheap: metadata and z arrays only); a stack's images
    are read from disk when that stack is indexed. Close it, or use it as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StackFileError(f"focus-stack file not found: {self.path}")
        if self.path.is_dir():
            raise StackFileError(f"{self.path} is a folder, not a focus-stack file")
        if not h5py.is_hdf5(self.path):
            raise StackFileError(f"{self.path} is not an HDF5 file")
        self._file: h5py.File | None = h5py.File(self.path, "r")
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    def _validate(self) -> None:
        f = self._h5
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        missing = [k for k in (*OPTICS_ATTRS, "source") if k not in attrs]
        if missing:
            raise StackFileError(
                f"{self.path} lacks the file attribute(s) {', '.join(missing)}; "
                "not a focus-stack file"
            )
        self.attrs: dict[str, Any] = attrs
        wavelengths = np.atleast_1d(np.asarray(attrs["wavelengths_um"], dtype=np.float64))
        try:
            self.optics = OpticalPath(
                objective=Objective(
                    name=f"{float(attrs['magnification']):g}x/{float(attrs['na']):.2f}",
                    magnification=float(attrs["magnification"]),
                    na=float(attrs["na"]),
                    immersion_n=float(attrs["immersion_n"]),
                ),
                sensor_pixel_um=float(attrs["pixel_size_um"]) * float(attrs["magnification"]),
                wavelength_um=float(attrs.get("wavelength_um", REFERENCE_WAVELENGTH_UM)),
                wavelengths_um=tuple(float(w) for w in wavelengths),
            )
        except ValueError as exc:
            raise StackFileError(f"{self.path}: bad optics attributes: {exc}") from None
        if float(attrs["pixel_size_um"]) <= 0:
            raise StackFileError(f"{self.path}: pixel_size_um must be positive")

        group = f.get("stacks")
        if not isinstance(group, h5py.Group):
            raise StackFileError(f"{self.path} has no /stacks group; not a focus-stack file")
        self._ids: list[str] = list(group.keys())
        self._z: dict[str, np.ndarray] = {}
        for sid in self._ids:
            g = group[sid]
            where = f"{self.path}: stack {sid!r}"
            if not isinstance(g, h5py.Group):
                raise StackFileError(f"{where} is not a group")
            for name in ("images", "z_um"):
                if not isinstance(g.get(name), h5py.Dataset):
                    raise StackFileError(f"{where} has no '{name}' dataset")
            z = np.asarray(g["z_um"][()], dtype=np.float64)
            tf = g.attrs.get("true_focus_um")
            try:
                _check_stack(
                    sid, g["images"].shape, g["images"].dtype, z, None if tf is None else float(tf)
                )
            except StackFileError as exc:
                raise StackFileError(f"{self.path}: {exc}") from None
            self._z[sid] = z

    @property
    def _h5(self) -> h5py.File:
        if self._file is None:
            raise StackFileError(f"{self.path} is closed")
        return self._file

    @property
    def source(self) -> str:
        return str(self.attrs["source"])

    @property
    def source_config(self) -> dict[str, Any] | None:
        """The generator's configuration (the SimConfig for simulated files), if recorded."""
        raw = self.attrs.get("source_config")
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            return {"raw": raw}
        return value if isinstance(value, dict) else {"value": value}

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def z_um(self, key: int | str) -> np.ndarray:
        """The z positions of one stack without reading its images."""
        return self._z[self._id_of(key)].copy()

    def shape(self, key: int | str) -> tuple[int, ...]:
        return tuple(self._h5["stacks"][self._id_of(key)]["images"].shape)

    def dtype(self, key: int | str) -> np.dtype:
        return self._h5["stacks"][self._id_of(key)]["images"].dtype

    def true_focus_um(self, key: int | str) -> float | None:
        tf = self._h5["stacks"][self._id_of(key)].attrs.get("true_focus_um")
        return None if tf is None else float(tf)

    def _id_of(self, key: int | str) -> str:
        if isinstance(key, str):
            if key not in self._z:
                raise KeyError(f"no stack {key!r} in {self.path} (ids: {_preview(self._ids)})")
            return key
        n = len(self._ids)
        i = int(key)
        if not -n <= i < n:
            raise IndexError(f"stack index {i} out of range; {self.path} holds {n} stacks")
        return self._ids[i]

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, key: int | str) -> FocusStack:
        sid = self._id_of(key)
        g = self._h5["stacks"][sid]
        meta = {k: _attr_value(v) for k, v in g.attrs.items() if k != "true_focus_um"}
        return FocusStack(
            id=sid,
            images=g["images"][()],
            z_um=self._z[sid].copy(),
            true_focus_um=self.true_focus_um(sid),
            meta=meta,
            reference=self.reference(sid),
        )

    def reference(self, key: int | str) -> np.ndarray | None:
        """The stack's noise-free in-focus image (float32, 0-255), or None when the file has
        none for it."""
        g = self._h5["stacks"][self._id_of(key)]
        if "reference" not in g:
            return None
        try:
            return np.asarray(g["reference"][()], np.float32)
        except OSError as exc:
            raise StackFileError(
                f"{self.path}: stack {key!r}: unreadable reference ({exc})"
            ) from None

    def __iter__(self) -> Iterator[FocusStack]:
        for sid in self._ids:
            yield self[sid]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> StackFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _preview(ids: list[str], k: int = 5) -> str:
    return ", ".join(ids[:k]) + (", ..." if len(ids) > k else "")


def open_stacks(path: str | os.PathLike[str]) -> StackFile:
    """Open a focus-stack file for reading (see `StackFile`)."""
    return StackFile(path)
