"""The commands of job dependencies and results (protocol/spec.md §14.6, §14.7):
`RESULT GET <jid>` ⇒ the job's outcome record, `JOB DEPS <jid>` ⇒ its dependencies and
dependents. Errors: `RESULT needs GET <jid>`, `JOB needs DEPS <jid>`. The records are
features/workflows'."""

from __future__ import annotations

from .. import wire
from ..errors import ClientError
from ..features.workflows.feature import Workflows
from .dispatch import Session
from .feature_command import FeatureCommand


class ResultCommand(FeatureCommand[Workflows]):
    """RESULT over the outcome records."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        jid = rest.strip()
        if sub != "GET" or not jid:
            raise ClientError("RESULT needs GET <jid>")
        return wire.bulk_json(self.feature.result(jid, now))


class JobCommand(FeatureCommand[Workflows]):
    """JOB over the held jobs and their edges."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        jid = rest.strip()
        if sub != "DEPS" or not jid:
            raise ClientError("JOB needs DEPS <jid>")
        return wire.bulk_json(self.feature.deps(jid))
