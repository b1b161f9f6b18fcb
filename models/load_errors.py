"""One-line reasons for refused model files, without torch's advice to load them unsafely.

``torch.load(weights_only=True)`` explains a refusal with a paragraph that says re-running
with ``weights_only=False`` "will likely succeed". Here that advice is wrong (the file was
refused because it may run code), so :func:`refusal_detail` keeps only what names the cause.
"""

from __future__ import annotations

import re

_UNSAFE_ADVICE = re.compile(
    r"weights_only[`'\"]? (?:set to|=) ?[`'\"]?False|will likely succeed|trusted source|trust the source|"
    r"add_safe_globals|safe_globals|In PyTorch 2\.6, we changed|Check the documentation of torch\.load|"
    r"This file can still be loaded|^\(\d\)",
    re.IGNORECASE,
)
_CAUSE = re.compile(r"unsupported global|GLOBAL |WeightsUnpickler error|blocked|not an allowed global", re.IGNORECASE)


def refusal_detail(exc: BaseException, limit: int = 300, text: str | None = None) -> str:
    """The cause of a refused load in one line, without advice to load the file unsafely.

    Args:
        exc: the exception ``torch.load`` (or a loader around it) raised.
        limit: longest cause returned, characters.
        text: the message to read instead of ``str(exc)`` (a loader's cleaned-up text).

    Returns:
        ``"<ExceptionType>: <cause>"``; the sentence naming the refused global when there is one.
    """
    message = str(exc) if text is None else text
    sentences = [s.strip() for line in message.splitlines() for s in re.split(r"(?<=[.!?])\s+", line) if s.strip()]
    kept = [s for s in sentences if not _UNSAFE_ADVICE.search(s)]
    causes = [s for s in kept if _CAUSE.search(s)]
    cause = " ".join(causes or kept[:1]) or "no further detail"
    return f"{type(exc).__name__}: {cause[:limit]}"
