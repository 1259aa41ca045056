"""A streamed answer's tool calls as OpenAI streams them: text before a call as content, then for each call a
first piece that names it (arguments "") and pieces that append to its arguments as the model writes them."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmkit.models.tool_parsers import ToolParser


@dataclass(frozen=True)
class CallPiece:
    """A piece of the answer's call `index`: the first names it (`name`, `arguments` ""), the rest append to
    its arguments."""

    index: int
    arguments: str
    name: str | None = None


@dataclass
class StreamDelta:
    """What an answer's text adds since the last look: content, and pieces of calls."""

    content: str = ""
    calls: list[CallPiece] = field(default_factory=list)


class ToolCallStream:
    """One streamed answer read by `parser`: each look at its text so far gives what is new.

    Text waits while it may still open a call (the tail of a half-written `<tool_call>`, a lone `{`), and a
    call is sent once its name is whole and its arguments have begun. Text that turns out not to be
    well-formed calls goes out as content from where the calls seemed to begin. With `max_calls`, calls after
    that many are not sent (as a whole answer's are cut).
    """

    def __init__(self, parser: ToolParser, max_calls: int | None = None) -> None:
        self.parser, self.max_calls = parser, max_calls
        self.content = ""  # content sent
        self.arguments: list[str] = []  # arguments sent, per call sent
        self.plain_from: int | None = None  # once the text is not calls: where the raw text still to send begins

    @property
    def called(self) -> bool:
        """True once a call has been sent."""
        return bool(self.arguments)

    def feed(self, text: str, final: bool = False) -> StreamDelta:
        """What `text` (the answer so far; `final` when it is whole) adds to what was sent."""
        if self.plain_from is not None:
            delta, self.plain_from = StreamDelta(text[self.plain_from :]), len(text)
            return delta
        draft = self.parser.draft(text)
        if draft.malformed or (final and not draft.complete and not self.called):
            self.plain_from = len(text)
            if not self.content and not self.called:
                return StreamDelta(text)
            return StreamDelta(draft.content[len(self.content) :] + text[draft.consumed :])
        delta = StreamDelta(self._new_content(draft.content, final))
        for index, call in enumerate(draft.calls[: self.max_calls]):
            if call.name is None or call.arguments is None:
                break
            if index == len(self.arguments):
                self.arguments.append("")
                delta.calls.append(CallPiece(index, "", call.name))
            if piece := call.arguments[len(self.arguments[index]) :]:
                delta.calls.append(CallPiece(index, piece))
                self.arguments[index] = call.arguments
        return delta

    def _new_content(self, content: str, final: bool) -> str:
        """Content not sent yet, less a tail that may still open a call (until `final`). Whitespace at the end
        waits for text after it: an answer that calls drops it, as a whole answer's content is stripped."""
        if not content.startswith(self.content):
            return ""
        if not final:
            content = content[: len(content) - _marker_prefix(content, self.parser.start)]
        if not final or self.called:
            content = content.rstrip()
        new = content[len(self.content) :]
        self.content += new
        return new


def _marker_prefix(text: str, marker: str) -> int:
    """The length of the longest end of `text` that begins `marker` (without being all of it)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0
