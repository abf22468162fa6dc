"""The glue between the call layer and media anchoring: opens a
:class:`pbx.media.anchor.MediaAnchor` for each anchored call
(:class:`pbx.calls.anchoring.Anchors`), with the process's prompt library
and recording writer."""

from __future__ import annotations

from pbx.calls.local import MediaUnavailable
from pbx.ivr.prompts import PromptLibrary
from pbx.media.anchor import MediaAnchor
from pbx.media.endpoint import MediaEngine
from pbx.media.ports import PortsExhausted
from pbx.recording.policy import CallRecording
from pbx.recording.writer import RecordingWriter


class AnchorService:
    """Opens anchors for the call layer (``CallController.anchors``)."""

    def __init__(self, engine: MediaEngine, prompts: PromptLibrary | None, writer: RecordingWriter | None) -> None:
        self.engine = engine
        self.prompts = prompts
        self.writer = writer

    def open(self, call_uuid: str, recording: CallRecording, language: str) -> MediaAnchor:
        try:
            return MediaAnchor(self.engine, call_uuid=call_uuid, recording=recording, writer=self.writer,
                               prompts=self.prompts, language=language)
        except PortsExhausted as err:
            raise MediaUnavailable(str(err)) from None
