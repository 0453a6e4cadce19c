"""The LLM layer's errors, in a module of their own so that the client and pricing both import them."""

from __future__ import annotations

from optforge.config import ConfigError


class LLMError(RuntimeError):
    """A call failed after its retries, or failed in a way retrying cannot fix (auth, bad request)."""


class LLMConfigError(LLMError, ConfigError):
    """The LLM config cannot work (missing key variable, unknown price); the message says what to set."""
