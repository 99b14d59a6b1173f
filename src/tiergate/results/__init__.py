"""The run's results rebuilt from events; JUnit in and out; the results dir."""
