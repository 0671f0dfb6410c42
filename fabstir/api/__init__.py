"""The renter API: OpenAI-compatible routes and WebSocket sessions bound to on-chain jobs."""

from fabstir.api.app import create_app
from fabstir.api.server import ApiServer
from fabstir.api.services import ApiServices, JobRunner, WaitingJobRunner
from fabstir.api.streams import JobStream, JobStreams, StreamFailed, Turn, TurnEnded

__all__ = [
    "ApiServer",
    "ApiServices",
    "JobRunner",
    "JobStream",
    "JobStreams",
    "StreamFailed",
    "Turn",
    "TurnEnded",
    "WaitingJobRunner",
    "create_app",
]
