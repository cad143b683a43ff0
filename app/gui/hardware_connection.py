"""The main window's hardware: which microscope is connected, from which profile, with which
objective, and the dialogs that set profiles up (the wizard, the profile manager).

`HardwareConnection` owns the `Microscope`, its `HardwareProfile`, the camera tap the live
view reads, and the `StageController` that moves the stage off the GUI thread. Opening and
closing run on the `DeviceWorker`; views learn of a change through `microscopeChanged` and of
stage moves through `positionChanged`, so none of them keeps a reference to the hardware.
While a scan runs the connection is `locked`: the scan owns the devices, so no profile switch,
objective change or reconnect happens underneath it.
"""

from __future__ import annotations

import logging

import shiboken6
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.camera_tap import CameraTap, install_tap
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.stage_panel import StageController
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import Position
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OBJECTIVES
from slidescan.hardware.profile import HardwareProfile

log = logging.getLogger(__name__)


class HardwareConnection(QtCore.QObject):
    #: The microscope now in use (a `Microscope`), or None when disconnected.
    microscopeChanged = QtCore.Signal(object)
    #: The microscope in use is being closed: let go of its stage controller and camera.
    released = QtCore.Signal()
    #: A profile is being opened (its name).
    connecting = QtCore.Signal(str)
    #: Opening a profile failed (its name).
    connectFailed = QtCore.Signal(str)
    #: The stage is at this `Position` (from the current stage controller).
    positionChanged = QtCore.Signal(object)

    def __init__(
        self,
        worker: DeviceWorker,
        settings: QtCore.QSettings,
        notifier: Notifier,
        dialog_parent: QtWidgets.QWidget,
    ) -> None:
        super().__init__(dialog_parent)
        self._worker = worker
        self._settings = settings
        self._notifier = notifier
        self._dialog_parent = dialog_parent
        self.microscope: Microscope | None = None
        self.profile: HardwareProfile | None = None
        self.profile_name = ""
        self.tap: CameraTap | None = None
        self.stage_controller: StageController | None = None
        #: The objective last used (kept in the settings), preferred when a profile connects.
        self.preferred_objective = ""
        self.wizard: QtWidgets.QWizard | None = None
        self._closing = False
        self.profile_manager: QtWidgets.QDialog | None = None
        self._locked = False

    # -- what is connected -------------------------------------------------------------------
    @property
    def objective_name(self) -> str:
        return self.microscope.optics.objective_name if self.microscope is not None else ""

    @property
    def fov_um(self) -> tuple[float, float]:
        """(width, height) of one camera field at the specimen; (0, 0) with no microscope."""
        m = self.microscope
        if m is None:
            return (0.0, 0.0)
        shape = tuple(m.camera.shape)
        pixel = float(m.optics.pixel_size_um)
        return (shape[1] * pixel, shape[0] * pixel)

    @property
    def stage_position(self) -> Position | None:
        ctl = self.stage_controller
        return ctl.position if ctl is not None else None

    def objective_names(self) -> list[str]:
        """The objectives the person can choose: the profile's (else the catalogue), with the
        one in use first when the profile does not list it."""
        names = [o.name for o in self.profile.objectives] if self.profile else list(OBJECTIVES)
        current = self.objective_name
        if current and current not in names:
            names.insert(0, current)
        return names

    def note_scan_position(self, xyz: dict[str, float]) -> None:
        """The scan has put the stage at `xyz` (axes it knows): shown without reading the
        stage, which the scan owns."""
        ctl = self.stage_controller
        if ctl is None or not xyz:
            return
        old = ctl.position or Position(0.0, 0.0, 0.0)
        ctl.set_known_position(
            Position(xyz.get("x", old.x), xyz.get("y", old.y), xyz.get("z", old.z))
        )

    def set_locked(self, locked: bool) -> None:
        """A scan owns the hardware (True) or has let it go (False)."""
        self._locked = locked

    # -- connecting --------------------------------------------------------------------------
    def connect_profile(self, name: str, objective: str | None = None) -> None:
        """Open profile `name` on the worker (with `objective`, else the one last used when the
        profile has it, else its default); a failure offers the wizard or the simulator."""
        if self._refused("switch the hardware"):
            return
        from slidescan.hardware.profile import load_profile, open_microscope

        self.connecting.emit(name)
        self._notifier.status(f"connecting to {name} …")
        preferred = self.preferred_objective

        def job() -> tuple[HardwareProfile, Microscope]:
            prof = load_profile(name)
            names = [o.name for o in prof.objectives]
            chosen = objective or (preferred if preferred in names else None)
            return prof, open_microscope(prof, objective=chosen)

        self.release()
        self._worker.submit(
            job,
            on_result=lambda r: self._opened(r[1], name, r[0]),
            on_error=lambda exc: self._profile_failed(name, exc),
            label=f"open profile {name}",
        )

    def _opened(self, microscope: Microscope, name: str, profile: HardwareProfile) -> None:
        if self._closing:  # the window closed while the profile opened: never leave it open
            log.info("closing %s: it opened after the window closed", name)
            microscope.close()
            return
        self.set_microscope(microscope, name, profile)

    def reconnect(self, objective: str | None = None) -> None:
        if self._refused("reconnect"):
            return
        name = self.profile_name or str(self._settings.value("profile/last", "simulator"))
        self.connect_profile(name, objective)

    def switch_objective(self, name: str) -> None:
        """Reopen the profile with objective `name` (the optics change with it)."""
        if not name or not self.profile_name or name == self.objective_name or self._locked:
            return
        self.connect_profile(self.profile_name, name)

    def set_microscope(
        self,
        microscope: Microscope | None,
        profile_name: str = "",
        profile: HardwareProfile | None = None,
    ) -> None:
        """Use `microscope` from now on (None: disconnect)."""
        self.release()
        self.microscope = microscope
        self.profile = profile
        self.profile_name = profile_name
        if microscope is None:
            self.microscopeChanged.emit(None)
            return
        self.tap = install_tap(microscope)
        ctl = StageController(microscope.stage, self._worker, parent=self)
        ctl.positionChanged.connect(self.positionChanged)
        ctl.message.connect(lambda t: self._notifier.status(t, 4000))
        ctl.error.connect(lambda t: self._notifier.error("Stage", t))
        self.stage_controller = ctl
        objective = microscope.optics.objective_name
        self.preferred_objective = objective
        if profile_name:
            self._settings.setValue("profile/last", profile_name)
        self.microscopeChanged.emit(microscope)
        self._notifier.status(f"connected: {profile_name or 'microscope'}", 5000)
        log.info("connected %s (%s)", profile_name or "microscope", objective)

    def release(self) -> None:
        """Stop using the current microscope: stop its stream and close it on the worker."""
        m, tap = self.microscope, self.tap
        if m is None:
            return
        self.released.emit()
        if self.stage_controller is not None:
            self.stage_controller.stop_polling()
            self.stage_controller.deleteLater()
            self.stage_controller = None
        self.microscope = None
        self.tap = None

        def close() -> None:
            if tap is not None and tap.streaming:
                tap.stop_stream()
            m.close()

        self._worker.submit(close, label="close microscope")

    def shutdown(self) -> None:
        """The window is closing: close the setup dialogs and the microscope; a profile still
        opening is closed as soon as it has opened (`_opened`)."""
        self._closing = True
        for dialog in (self.wizard, self.profile_manager):
            if dialog is not None and shiboken6.isValid(dialog):
                dialog.close()
        self.release()

    def _profile_failed(self, name: str, exc: BaseException) -> None:
        if self._closing:
            log.info("profile %s did not open (the window has closed): %s", name, exc)
            return
        self.connectFailed.emit(name)
        buttons = {"Run the hardware wizard…": lambda: self.run_wizard()}
        if name != "simulator":
            buttons["Use the simulator"] = lambda: self.connect_profile("simulator")
        self._notifier.error(
            "Hardware", f"Profile '{name}' could not connect:\n{exc}", buttons=buttons
        )

    def _refused(self, what: str) -> bool:
        if self._locked:
            self._notifier.status(f"a scan is running: cannot {what} now", 4000)
        return self._locked

    # -- profiles ----------------------------------------------------------------------------
    def profile_names(self) -> list[str]:
        """Saved and shipped profiles; raises when the profile folder cannot be read."""
        from slidescan.hardware.profile import list_profiles

        return list_profiles()

    def run_wizard(self, first_start: bool = False) -> None:
        """Open the hardware wizard; on a first start, cancelling it falls back to the
        shipped simulator profile so the program is usable at once."""
        wizard = self._open_wizard(edit=None)
        if first_start:
            wizard.rejected.connect(
                lambda: self.connect_profile("simulator") if self.microscope is None else None
            )

    def edit_profile(self, name: str) -> None:
        self._open_wizard(edit=name)

    def manage_profiles(self) -> None:
        from slidescan.app.gui.wizard import ProfileManager

        dlg = ProfileManager(self._dialog_parent, current=self.profile_name)
        dlg.useProfile.connect(self.connect_profile)
        dlg.editProfile.connect(self.edit_profile)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        self.profile_manager = dlg
        dlg.open()

    def _open_wizard(self, edit: str | None) -> QtWidgets.QWizard:
        from slidescan.app.gui.wizard import HardwareWizard

        wizard = HardwareWizard(self._dialog_parent, worker=self._worker, edit=edit)
        wizard.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.profileSaved.connect(lambda name: self.connect_profile(name))
        self.wizard = wizard
        wizard.open()
        return wizard
