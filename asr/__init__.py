"""asr: a readable CTC speech recognizer (log-mel -> bidirectional RNN -> CTC)."""

from asr.transcribe import Recognizer, load_model

__all__ = ["Recognizer", "load_model"]
__version__ = "0.1.0"
