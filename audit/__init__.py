"""The audit log: append-only, tamper-evident, publicly checkable.

Entries are canonical JSON (RFC 8785) hashed into an RFC 9162 Merkle tree; signed C2SP
checkpoints let anyone holding the public key check that the log only ever grew. This package
never imports ``safesetting``: the service calls it, not the other way round.
"""

from audit.canonical import CanonicalJSONError, canonical_json, epsilon_to_micro, micro_to_epsilon
from audit.checkpoint import (
    DEFAULT_ORIGIN,
    Checkpoint,
    CheckpointError,
    KeyFileError,
    SigningKey,
    VerifierKey,
    checkpoint_body,
    latest_checkpoint,
    load_key,
    load_or_create_key,
    only_signed_by,
    open_checkpoint,
    sign_checkpoint,
    stage_key,
)
from audit.entry import (
    ALLOWED_REQUEST_KEYS,
    FORBIDDEN_KEYS,
    AuditEntry,
    EntryError,
    ForbiddenContentError,
)
from audit.keys import ROTATED, KeyHistory, KeyPeriod, Rotation, read_history
from audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from audit.publish import ProofError, consistency_bundle, export_jsonl, inclusion_bundle
from audit.store import (
    TreeHead,
    append_entry,
    create_schema,
    get_entry,
    prove_consistency,
    prove_inclusion,
    read_entries,
    root_at,
    tree_head,
)
from audit.verify import Problem, VerifyResult, verify_log

__all__ = [
    "ALLOWED_REQUEST_KEYS",
    "DEFAULT_ORIGIN",
    "FORBIDDEN_KEYS",
    "AuditEntry",
    "CanonicalJSONError",
    "Checkpoint",
    "CheckpointError",
    "EntryError",
    "ForbiddenContentError",
    "ROTATED",
    "KeyFileError",
    "KeyHistory",
    "KeyPeriod",
    "Problem",
    "ProofError",
    "Rotation",
    "SigningKey",
    "TreeHead",
    "VerifierKey",
    "VerifyResult",
    "append_entry",
    "canonical_json",
    "checkpoint_body",
    "consistency_bundle",
    "consistency_proof",
    "create_schema",
    "epsilon_to_micro",
    "export_jsonl",
    "get_entry",
    "inclusion_bundle",
    "inclusion_proof",
    "latest_checkpoint",
    "leaf_hash",
    "load_key",
    "load_or_create_key",
    "micro_to_epsilon",
    "only_signed_by",
    "open_checkpoint",
    "prove_consistency",
    "prove_inclusion",
    "read_entries",
    "read_history",
    "root_at",
    "root_hash",
    "sign_checkpoint",
    "stage_key",
    "tree_head",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
