"""The pure core of crmsync: wire types, clocks, merge, sync rules, checkpoints, checksums.

No I/O and no framework imports: everything else in the project imports this package,
never the reverse.
"""

from .changesets import ChangesetResult, Mutation, MutationResult, PushRequest, UpstreamBatch
from .checksum import ChannelChecksum, record_hash
from .errors import ProtocolError
from .hlc import HLC, Clock
from .merge import MergeContext, MergeResult, merge
from .pull import BootstrapBatch, PullResponse, Removal
from .records import Record, RecordChange
from .rules import Grants, SyncRules, parse_rules
from .version import PROTOCOL_VERSION

__all__ = [
    "HLC",
    "PROTOCOL_VERSION",
    "BootstrapBatch",
    "ChangesetResult",
    "ChannelChecksum",
    "Clock",
    "Grants",
    "MergeContext",
    "MergeResult",
    "Mutation",
    "MutationResult",
    "ProtocolError",
    "PullResponse",
    "PushRequest",
    "Record",
    "RecordChange",
    "Removal",
    "SyncRules",
    "UpstreamBatch",
    "merge",
    "parse_rules",
    "record_hash",
]
