"""File ▸ Export slide: the stitched slide of a scan file as a pyramid (Aperio SVS, OME-TIFF,
OME-Zarr), written by a child process (child_job.py) with a progress bar, the time left and
Cancel.

A file that was never stitched is stitched first when the person leaves "Stitch it first"
on (the same progress bar). Stitching writes to the scan file, so the owner's `release` and
`reopen` let review windows close their readers meanwhile and read the file again after.
Whether a file is stitched is asked of the owner's `generation` when it has the file open
(a second reader of a file in this process would break the first one's reads, see
slide_jobs.py), else read from the file. Every failure is one line in the dialog; a
cancelled or failed export leaves nothing at the output (app/export/slide.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from slidescan.app.export.codec import COMPRESSIONS, DEFAULT_QUALITY
from slidescan.app.export.slide import DEFAULT_COMPRESSION, ExportResult
from slidescan.app.gui.child_job import ChildJob, format_eta
from slidescan.app.gui.slide_jobs import STAGE_NAMES

log = logging.getLogger(__name__)

#: (label, format, suffix) in the order offered.
FORMATS = (
    ("Aperio SVS (.svs): OpenSlide, QuPath", "svs", ".svs"),
    ("OME-TIFF (.ome.tif): Bio-Formats, QuPath", "ome-tiff", ".ome.tif"),
    ("OME-Zarr (.ome.zarr): napari, web viewers", "ome-zarr", ".ome.zarr"),
)
_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".svs", ".tiff", ".tif")

PathHook = Callable[[str], None]
#: The stitching generation of a scan file this process has open (None: not open here).
GenerationHook = Callable[[str], "int | None"]


def stitch_state(path: str, open_here: GenerationHook | None = None) -> int:
    """The committed stitching generation of scan file `path` (0: never stitched); raises
    ValueError (one line) for a file that cannot be read."""
    if open_here is not None:
        known = open_here(path)
        if known is not None:
            return known
    from slidescan.app.store import ScanFileError, ScanReader

    try:
        with ScanReader(path) as reader:
            return int(reader.stitch_generation)
    except ScanFileError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def output_for(scan: str | Path, fmt: str) -> str:
    """The default output beside the scan file: its name with the format's suffix."""
    suffix = next(s for _, f, s in FORMATS if f == fmt)
    scan = Path(scan)
    return str(scan.with_name(scan.stem + suffix)) if scan.name else ""


def with_suffix(path: str, fmt: str) -> str:
    """`path` with its export suffix (if any) replaced by `fmt`'s."""
    suffix = next(s for _, f, s in FORMATS if f == fmt)
    low = path.lower()
    for old in _SUFFIXES:
        if low.endswith(old):
            return path[: -len(old)] + suffix
    return path + suffix if path else path


class ExportSlideDialog(QtWidgets.QDialog):
    #: The export finished: its `ExportResult`.
    exported = QtCore.Signal(object)
    #: A stitch or export failed or was refused: the one-line reason.
    failed = QtCore.Signal(str)
    #: The export was cancelled (nothing written).
    cancelled = QtCore.Signal()
    #: A stitch on its own ("Stitch only") finished: the stitcher's figures.
    stitched = QtCore.Signal(object)

    def __init__(
        self,
        scan_path: str = "",
        parent: QtWidgets.QWidget | None = None,
        release: PathHook | None = None,
        reopen: PathHook | None = None,
        generation: GenerationHook | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export slide")
        self._release = release or (lambda path: None)
        self._reopen = reopen or (lambda path: None)
        self._generation = generation
        self.job = ChildJob("export", self)
        self.job.progressed.connect(self._progressed)
        self.job.succeeded.connect(self._succeeded)
        self.job.failed.connect(self._failed)
        self.job.cancelled.connect(self._cancelled)
        self._phase = ""  # "stitch" or "export" while a job runs
        self._export_after_stitch = True
        self._close_when_done = False
        self.result: Any = None
        self.last_error = ""
        self._build()
        self.scan.setText(scan_path)
        self._format_changed()
        if scan_path:
            self.output.setText(output_for(scan_path, self.fmt))
        self._check_scan()
        self._set_running(False)

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        self.scan = QtWidgets.QLineEdit()
        self.scan.setToolTip("The scan file (.h5) to export")
        self.scan.editingFinished.connect(self._scan_edited)
        scan_browse = QtWidgets.QToolButton()
        scan_browse.setText("…")
        scan_browse.clicked.connect(self._browse_scan)
        self.scan_state = QtWidgets.QLabel("")
        self.stitch_first = QtWidgets.QCheckBox("Stitch it first (registers the tiles' overlaps)")
        self.stitch_first.setChecked(True)
        self.format = QtWidgets.QComboBox()
        for label, fmt, _ in FORMATS:
            self.format.addItem(label, fmt)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.compression = QtWidgets.QComboBox()
        self.compression.currentTextChanged.connect(self._compression_changed)
        self.quality = QtWidgets.QSpinBox()
        self.quality.setRange(1, 100)
        self.quality.setValue(DEFAULT_QUALITY)
        self.quality.setToolTip("JPEG quality (90: visually lossless for H&E)")
        self.output = QtWidgets.QLineEdit()
        out_browse = QtWidgets.QToolButton()
        out_browse.setText("…")
        out_browse.clicked.connect(self._browse_output)
        self.overwrite = QtWidgets.QCheckBox("Replace an existing file")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stage = QtWidgets.QLabel("")
        self.error = QtWidgets.QLabel("")
        self.error.setStyleSheet("color: #d04040")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        def row(*widgets: QtWidgets.QWidget) -> QtWidgets.QHBoxLayout:
            h = QtWidgets.QHBoxLayout()
            h.addWidget(widgets[0], 1)
            for w in widgets[1:]:
                h.addWidget(w)
            return h

        form = QtWidgets.QFormLayout()
        form.addRow("Scan file", row(self.scan, scan_browse))
        form.addRow("", self.scan_state)
        form.addRow("", self.stitch_first)
        form.addRow("Format", self.format)
        form.addRow("Compression", row(self.compression, QtWidgets.QLabel("quality"), self.quality))
        form.addRow("Save as", row(self.output, out_browse))
        form.addRow("", self.overwrite)

        self.buttons = QtWidgets.QDialogButtonBox()
        self.export_button = self.buttons.addButton(
            "Export", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.cancel_button = self.buttons.addButton(
            "Cancel", QtWidgets.QDialogButtonBox.ButtonRole.RejectRole
        )
        self.close_button = self.buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.stitch_button = self.buttons.addButton(
            "Stitch only", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole
        )
        self.stitch_button.setToolTip(
            "Register the tiles' overlaps and store the placement in the scan file (the "
            "review's Slide tab then shows the stitched slide), without exporting"
        )
        self.stitch_button.clicked.connect(self.stitch_only)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        v = QtWidgets.QVBoxLayout(self)
        v.addLayout(form)
        v.addWidget(self.progress)
        v.addWidget(self.stage)
        v.addWidget(self.error)
        v.addWidget(self.buttons)
        self.setMinimumWidth(560)

    # -- the form ------------------------------------------------------------------------------
    @property
    def fmt(self) -> str:
        return str(self.format.currentData())

    def set_format(self, fmt: str) -> None:
        self.format.setCurrentIndex(self.format.findData(fmt))

    def _format_changed(self, *_: object) -> None:
        fmt = self.fmt
        allowed = [c for c in COMPRESSIONS if not (fmt == "ome-zarr" and c == "jpeg")]
        current = self.compression.currentText()
        with QtCore.QSignalBlocker(self.compression):
            self.compression.clear()
            self.compression.addItems(allowed)
            self.compression.setCurrentText(
                current if current in allowed else DEFAULT_COMPRESSION[fmt]
            )
        self._compression_changed(self.compression.currentText())
        if self.output.text():
            self.output.setText(with_suffix(self.output.text(), fmt))

    def _compression_changed(self, name: str) -> None:
        self.quality.setEnabled(name == "jpeg")

    def _scan_edited(self) -> None:
        if self.scan.text() and not self.output.text():
            self.output.setText(output_for(self.scan.text(), self.fmt))
        self._check_scan()

    def _check_scan(self) -> bool | None:
        """Say whether the scan file is stitched; None when it cannot be read."""
        path = self.scan.text().strip()
        self.stitch_first.setVisible(False)
        self.stitch_button.setVisible(False)
        if not path:
            self.scan_state.setText("choose a scan file")
            return None
        try:
            generation = stitch_state(path, self._generation)
        except ValueError as exc:
            self.scan_state.setText(str(exc))
            return None
        if generation:
            self.scan_state.setText(f"stitched (stitching run {generation})")
            return True
        self.scan_state.setText("not stitched yet")
        self.stitch_first.setVisible(True)
        self.stitch_button.setVisible(True)
        return False

    def _browse_scan(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Scan file", self.scan.text(), "HDF5 scan files (*.h5)"
        )
        if path:
            self.scan.setText(path)
            self.output.setText(output_for(path, self.fmt))
            self._check_scan()

    def _browse_output(self) -> None:
        suffix = next(s for _, f, s in FORMATS if f == self.fmt)
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export slide", self.output.text(), f"{self.format.currentText()} (*{suffix})"
        )
        if path:
            self.output.setText(with_suffix(path, self.fmt))

    # -- running -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self._phase)

    def start(self) -> None:
        """Export (stitching first when needed and allowed)."""
        if self.running:
            return
        self.result = None
        self._show_error("")
        scan, out = self.scan.text().strip(), self.output.text().strip()
        if not scan or not out:
            self._refuse("choose the scan file and where to save the slide")
            return
        stitched = self._check_scan()
        if stitched is None:
            self._refuse(self.scan_state.text())
            return
        if not stitched:
            if not self.stitch_first.isChecked():
                self._refuse(f"{Path(scan).name} is not stitched: tick 'Stitch it first'")
                return
            self._stitch(scan)
            return
        self._export()

    def stitch_only(self) -> None:
        """Stitch the scan file (not stitched yet) and stop there."""
        if self.running:
            return
        self._show_error("")
        scan = self.scan.text().strip()
        if self._check_scan() is not False:
            self._refuse(self.scan_state.text() if scan else "choose the scan file")
            return
        self._stitch(scan, then_export=False)

    def _stitch(self, scan: str, then_export: bool = True) -> None:
        self._export_after_stitch = then_export
        self._release(scan)  # review windows close their readers: stitching writes the file
        self._phase = "stitch"
        self._set_running(True)
        self.stage.setText("stitching …")
        self.job.start("stitch", {"scan": scan})

    def _export(self) -> None:
        scan, out = self.scan.text().strip(), self.output.text().strip()
        fmt, compression, quality = self.fmt, self.compression.currentText(), self.quality.value()
        overwrite = self.overwrite.isChecked()
        self._phase = "export"
        self._set_running(True)
        self.stage.setText("exporting …")
        spec = {
            "scan": scan,
            "out": out,
            "format": fmt,
            "compression": compression,
            "quality": quality,
            "overwrite": overwrite,
        }
        self.job.start("export", spec)

    def cancel(self) -> None:
        """Stop the job (nothing is written); with nothing running, close."""
        if self.running:
            self.job.cancel()
            self.stage.setText("cancelling …")
            self.cancel_button.setEnabled(False)
        else:
            self.reject()

    def _progressed(self, stage: str, done: int, total: int, eta: float) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, total))
        name = STAGE_NAMES.get(stage, stage)
        self.stage.setText(f"{name}: {done} of {total} · {format_eta(eta)}")

    def _succeeded(self, result: Any) -> None:
        phase = self._phase
        self._phase = ""
        if phase == "stitch":
            self._reopen(self.scan.text().strip())
            self._check_scan()
            if self._export_after_stitch:
                self._export()  # stitched: now the export itself
                return
            self._set_running(False)
            self.progress.setValue(self.progress.maximum())
            self.stage.setText(
                f"stitched (run {result['generation']}): {result['tiles_registered']} tiles "
                f"placed by their overlaps, {result['tiles_stage']} by the stage"
            )
            self.stitched.emit(result)
            return
        self._set_running(False)
        result = ExportResult(**result)
        self.result = result
        mb = result.file_bytes / 1e6
        self.progress.setValue(self.progress.maximum())
        self.stage.setText(
            f"written {Path(result.path).name}: {result.format}, {result.compression}, "
            f"{len(result.levels)} levels, {mb:.1f} MB in {result.seconds:.1f} s"
        )
        log.info("slide exported: %s", result.path)
        self.exported.emit(result)
        self._close_if_asked()

    def _failed(self, reason: str) -> None:
        phase = self._phase
        self._phase = ""
        if phase == "stitch":
            self._reopen(self.scan.text().strip())
        self._set_running(False)
        self.progress.setValue(0)
        self.stage.setText("")
        self._show_error(f"{'stitching' if phase == 'stitch' else 'export'}: {reason}")
        self.failed.emit(self.last_error)
        self._close_if_asked()

    def _cancelled(self) -> None:
        phase = self._phase
        self._phase = ""
        if phase == "stitch":
            self._reopen(self.scan.text().strip())
            self._check_scan()
        self._set_running(False)
        self.progress.setValue(0)
        self.stage.setText(
            "stitching cancelled: the file is as it was"
            if phase == "stitch"
            else "export cancelled: nothing was written"
        )
        self.cancelled.emit()
        self._close_if_asked()

    def _refuse(self, text: str) -> None:
        self._show_error(text)
        self.failed.emit(text)

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.error.setText(text)
        self.error.setVisible(bool(text))
        if text:
            log.warning("export slide: %s", text)

    def _set_running(self, running: bool) -> None:
        for w in (self.scan, self.format, self.compression, self.output, self.overwrite):
            w.setEnabled(not running)
        self.stitch_first.setEnabled(not running)
        self.quality.setEnabled(not running and self.compression.currentText() == "jpeg")
        self.export_button.setEnabled(not running)
        self.stitch_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.cancel_button.setVisible(running)

    def _close_if_asked(self) -> None:
        if self._close_when_done:
            self._close_when_done = False
            self.close()

    def shutdown(self) -> None:
        """The window is closing: cancel a job and wait for its process (a few seconds at
        most: an export stops at its next tile), so nothing is left half-written."""
        if self.running:
            self.job.cancel()
            self.job.wait(15_000)
            QtCore.QCoreApplication.processEvents()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if self.running:  # cancel first, close once the job has let go of the files
            self._close_when_done = True
            self.cancel()
            event.ignore()
            return
        super().closeEvent(event)

    def reject(self) -> None:
        if self.running:
            self.cancel()
            return
        super().reject()
