"""OpenAI-compatible LM simulator: deterministic DSPy-valid answers, latency, pacing and injected faults."""

from lm_simulator.app import create_app
from lm_simulator.settings import SimulatorSettings

__all__ = ["SimulatorSettings", "create_app"]
__version__ = "0.1.0"
