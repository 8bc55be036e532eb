"""The CRON command (protocol/spec.md §12.4): `CRON STATUS` ⇒ every configured entry as a JSON
array (schedule, zone, job template, next run, last tick and job, counts). Error: `CRON needs
STATUS`. Cron stays configuration, not an API: there is no command that adds or fires an
entry. The state is features/cron's own."""

from __future__ import annotations

from .. import wire
from ..errors import ClientError
from ..features.cron.feature import Cron
from .dispatch import Session
from .feature_command import FeatureCommand


class CronCommand(FeatureCommand[Cron]):
    """CRON over the cron feature."""

    def run(self, session: Session, sub: str, rest: str, now: float) -> bytes:
        if sub != "STATUS" or rest.strip():
            raise ClientError("CRON needs STATUS")
        return wire.bulk_json(self.feature.status(now))
