"""a3s_serverless: the thin client of an a3s-serverless deployment, shaped like the A3S Code SDK."""
from .agent import Agent
from .errors import A3SClientError, AuthError, NotFoundError, RequestError, RunFailed, ServiceError
from .orchestration import FileSessionStore, MemorySessionStore
from .orchestrator import AgentOrchestrator
from .session import AgentResult, RunHandle, Session, SessionOptions, SessionQueueConfig
from .sqs_worker import handle_lane_event
from .worker import Worker

__all__ = ["Agent", "AgentOrchestrator", "FileSessionStore", "MemorySessionStore", "AgentResult", "RunHandle",
           "Session", "SessionOptions", "SessionQueueConfig", "Worker", "handle_lane_event",
           "A3SClientError", "AuthError", "NotFoundError", "RequestError", "RunFailed", "ServiceError"]
