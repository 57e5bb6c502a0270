"""The three phases end to end on the embedded stack: sample push → charges, files, emails."""

from tests.harness import Harness


async def test_sample_push_charged_end_to_end(harness: Harness) -> None:
    sample = await harness.load_sample(devices=30, seed=11)
    async with harness.context() as ctx:
        await harness.enqueue(ctx, *(instance.instance_id for instance in sample.instances))
        await harness.run_until_idle(ctx)

    rows = await harness.charge_queue_rows("m2m") + await harness.charge_queue_rows("mobility")
    ledger = await harness.ledger()
    assert len(rows) == sample.expected_rows
    assert all(row["IsProcessed"] for row in rows)
    assert harness.ledger_problems(ledger) == []
    assert len(harness.simulator.charges) == sum(1 for line in ledger if line["state"] == "created")
    winning = [queue for instance in sample.instances for queue in instance.winning_queue_ids]
    summaries = [email for email in harness.emails() if list(email.iter_attachments())]
    notifications = [email for email in harness.emails() if email["Subject"].startswith("Errors:")]
    assert len(summaries) == len(winning)
    assert len(notifications) == len(harness.emails()) - len(summaries)
    assert notifications
    errors = {row["ErrorMessage"] for row in rows if row["HasErrors"]}
    for case in sample.cases:
        if case.expected_error is not None:
            assert any(case.expected_error in error for error in errors), case.case
