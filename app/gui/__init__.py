"""The desktop application (PySide6 + pyqtgraph): the only Qt code in slidescan.

Widgets are thin views over the Qt-free engine: the scan runs on the runner's own thread and its
events are relayed onto the GUI thread through one queued signal (`relay.EventRelay`); hardware
calls from the GUI (jog, snap, wizard tests) run on a single worker thread (`worker.DeviceWorker`)
so the event loop never blocks. Start it with `slidescan gui` or `slidescan.app.gui.app.main()`.
"""
