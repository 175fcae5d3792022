"""The top layer: the ``finsent`` command, the stage bindings, the demo, the backtest and its
report, the local Kafka launcher, and the detector evaluation on NAB."""
