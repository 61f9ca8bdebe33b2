"""ARNs in AWS Batch's shape, made and read back.

    arn:aws:batch:REGION:ACCOUNT:compute-environment/NAME
    arn:aws:batch:REGION:ACCOUNT:job-queue/NAME
    arn:aws:batch:REGION:ACCOUNT:job-definition/NAME:REVISION
    arn:aws:batch:REGION:ACCOUNT:job/ID

The region is the server's (`--region`, default us-east-1). The account is a fixed fake
id, 000000000000, which no real AWS account has (moto uses 123456789012): a flowbatch ARN
can never be mistaken for a real one, and one pasted from real AWS is told apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ResourceKind = Literal["compute-environment", "job-queue", "job-definition", "job"]
KINDS: Final[tuple[ResourceKind, ...]] = (
    "compute-environment",
    "job-queue",
    "job-definition",
    "job",
)

DEFAULT_REGION: Final = "us-east-1"
ACCOUNT: Final = "000000000000"


@dataclass(frozen=True, slots=True)
class Arns:
    """The ARNs of one server: its region and account."""

    region: str = DEFAULT_REGION
    account: str = ACCOUNT

    def arn(self, kind: ResourceKind, name: str) -> str:
        """The ARN of resource `name` (a job definition's is `NAME:REVISION`, a job's
        its id)."""
        return f"arn:aws:batch:{self.region}:{self.account}:{kind}/{name}"

    def parse(self, arn: str) -> tuple[ResourceKind, str] | None:
        """(kind, name) of one of this server's ARNs; None for anything else (another
        region, account, partition or service, or not an ARN)."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "batch"]:
            return None
        if parts[3] != self.region or parts[4] != self.account:
            return None
        kind, slash, name = parts[5].partition("/")
        for known in KINDS:
            if kind == known and slash and name:
                return known, name
        return None

    def name_of(self, kind: ResourceKind, ref: str) -> str | None:
        """The name a reference names, where AWS accepts a name or an ARN: the name
        itself, or the name inside an ARN of `kind`; None for an ARN that is not one of
        this server's of that kind."""
        if not ref.startswith("arn:"):
            return ref
        parsed = self.parse(ref)
        if parsed is None or parsed[0] != kind:
            return None
        return parsed[1]
