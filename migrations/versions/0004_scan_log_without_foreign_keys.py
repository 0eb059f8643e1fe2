"""scan_events and code_states: drop their foreign keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Every scan checked five foreign keys on insert (run, enterprise, batch, product, device):
five index probes, each taking a KEY SHARE lock on a parent row -- the same few label-run,
batch, enterprise and product rows for every scan of a product. Measured on the project
machine (EXPLAIN ANALYZE of the scan log's flush, 40 scans): the checks took 2.6 of the
statement's 6.3 ms, about as much as inserting the rows with their indexes. The ids in a
scan come from the verdict read of those very rows in the same request, and the platform
never deletes an enterprise, product, batch, label run or device (records are corrected,
devices deactivated), so the keys guarded against nothing that can happen; what they did
do is make scan writes queue behind anyone holding such a row FOR UPDATE (issuing labels
locks the enterprise's row). code_states' key to label_runs goes for the same reasons: with
the five gone it was a third of what was left of the flush's checks (0.7 ms for 36 codes).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (constraint, column, referred table), as 0001 named them.
FOREIGN_KEYS = (
    ("fk_scan_events_run_id_label_runs", "run_id", "label_runs"),
    ("fk_scan_events_enterprise_id_enterprises", "enterprise_id", "enterprises"),
    ("fk_scan_events_batch_id_batches", "batch_id", "batches"),
    ("fk_scan_events_product_id_products", "product_id", "products"),
    ("fk_scan_events_device_id_devices", "device_id", "devices"),
)
CODE_STATE_KEY = ("fk_code_states_run_id_label_runs", "run_id", "label_runs")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # As in 0003: never wait long behind an analytics query holding the table.
        op.execute("SET LOCAL lock_timeout = '5s'")
    # SQLite cannot drop a constraint in place: batch mode copies the table.
    with op.batch_alter_table("scan_events") as batch:
        for name, _column, _table in FOREIGN_KEYS:
            batch.drop_constraint(name, type_="foreignkey")
    with op.batch_alter_table("code_states") as batch:
        batch.drop_constraint(CODE_STATE_KEY[0], type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("code_states") as batch:
        name, column, table = CODE_STATE_KEY
        batch.create_foreign_key(name, table, [column], ["id"])
    with op.batch_alter_table("scan_events") as batch:
        for name, column, table in FOREIGN_KEYS:
            batch.create_foreign_key(name, table, [column], ["id"])
