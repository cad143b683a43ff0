"""The GUI's own offline tools: the live-view and event-loop benchmarks, the stall monitor
they use, and the screenshot script. The application never imports them."""
