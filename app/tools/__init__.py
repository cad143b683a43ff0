"""Offline tools, in a room of their own: training, the focus yardstick, benchmarks, stack
synthesis and simulator data generation.

They use the scan engine, the learned-model kit and the simulator. The engine never imports
them, and they never import the CLI's modules (`slidescan.app.commands`): the commands are thin
wrappers around these. tests/test_architecture.py checks both.
"""
