"""The known defects of the replaced functions, each as a behaviour chargeworker must keep.

One test per defect, named after the behaviour that replaces it, on the embedded
stack: the daemon or a phase handler against moto, a database and the Rev.io
simulator.
"""

import asyncio
import contextlib
from collections import Counter
from datetime import date

from chargeworker.db.platform import mobility_charge_queue
from chargeworker.devstack.sample import (
    CASE_HALF_CENT_AMOUNTS,
    CASE_OVERAGE_PRODUCT_MISSING,
    CASE_UNKNOWN_CARRIER,
    PERIOD_END,
    PERIOD_START,
)
from tests.harness import Harness, unique_name
from tests.test_reliability import (
    SHORT_LEASE,
    attributes,
    case_row,
    charge_list_rows,
    charges_of_service,
    duplicate_charges,
    fill_queues,
    find_case,
    outcome_count,
    own_service_id,
    post_count,
    queue_depth,
    receive_all,
    row_lines,
    run_page,
    running_daemon,
    settings,
    summary_emails,
    unsettled_lines,
    wait_until,
    wait_until_idle,
)

# The replaced functions logged a failure and deleted its message.


async def test_failed_message_is_kept_not_deleted(sqlite_harness: Harness) -> None:
    """A check that cannot write its charge list (bucket missing) stays in SQS until it can."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    bucket = harness.resources.bucket

    async with harness.context(**settings()) as ctx:
        await ctx.aws.s3.delete_bucket(Bucket=bucket)
        await harness.enqueue(ctx, instance.instance_id)
        async with running_daemon(ctx) as daemon:
            failed = await wait_until(lambda: outcome_count(daemon, "check", "retry") >= 1)
            kept = await queue_depth(harness, ctx, "check")
            emails_during_outage = len(harness.emails())
            await ctx.aws.s3.create_bucket(Bucket=bucket)
            await wait_until_idle(harness, ctx, daemon)
        dead_letters = await harness.dead_letters(ctx)
        charge_lists = [
            await harness.read_object(ctx, f"{queue_id}.txt")
            for queue_id in instance.winning_queue_ids
        ]

    assert failed
    assert kept >= 1
    assert emails_during_outage == 0
    assert dead_letters == []
    assert len(charge_lists) == len(instance.winning_queue_ids)
    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id


# The replaced functions marked a row processed in both charge-queue tables by Id.


async def test_processed_mark_touches_only_own_table(sqlite_harness: Harness) -> None:
    """An M2M row marked processed leaves the Mobility row with the same Id alone."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    m2m_instance, mobility_instance = sample.instances[0], sample.instances[1]
    mobility_queue_id = mobility_instance.winning_queue_ids[0]
    async with harness.engine.begin() as connection:
        await connection.execute(
            mobility_charge_queue.insert(),
            [
                {
                    "Id": row_id,
                    "QueueId": mobility_queue_id,
                    "MobilityDeviceId": 900_000 + row_id,
                    "MSISDN": f"555000{row_id:04d}",
                    "CreatedBy": "test",
                    "CreatedDate": PERIOD_END,
                }
                for row_id in range(1, 31)
            ],
        )

    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, m2m_instance.instance_id)
        await harness.run_until_idle(ctx)

    m2m_rows = await harness.charge_queue_rows("m2m")
    mobility_rows = await harness.charge_queue_rows("mobility")
    shared_ids = {row["Id"] for row in m2m_rows} & {row["Id"] for row in mobility_rows}
    assert shared_ids != set()
    assert all(row["IsProcessed"] for row in m2m_rows)
    assert [row["Id"] for row in mobility_rows if row["IsProcessed"]] == []
    assert [row["Id"] for row in mobility_rows if row["ChargeId"] is not None] == []
    assert [row["Id"] for row in mobility_rows if row["ModifiedDate"] is not None] == []


# In the replaced functions only the last device's failure made the page retry.


async def test_any_retryable_line_retries_page(sqlite_harness: Harness) -> None:
    """A 500 on the first POST of a page, before later lines succeed, still retries that line."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.fail_next_posts(1, 500)
    async with harness.context(**settings(revio_concurrency_per_page=1)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    retried = [line for line in ledger if line["send_count"] == 2]
    assert len(retried) == 1
    failed_first = retried[0]
    later_on_page = [
        line
        for line in ledger
        if line["target_id"] == failed_first["target_id"]
        and line["id"] > failed_first["id"]
        and line["send_count"] == 1
        and line["state"] == "created"
    ]
    row = next(
        row for row in await harness.charge_queue_rows("m2m") if row["Id"] == failed_first["row_id"]
    )
    assert later_on_page != []
    assert failed_first["state"] == "created"
    assert row["IsProcessed"]
    assert failed_first["charge_id"] in (row["ChargeId"], row["SmsChargeId"])
    assert unsettled_lines(ledger) == []
    assert duplicate_charges(harness) == []


# The replaced functions marked a row processed as soon as its rate charge existed.


async def test_row_processed_only_when_all_lines_final(sqlite_harness: Harness) -> None:
    """A row stays open while its rate line is in doubt, and then each id gets its column."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_HALF_CENT_AMOUNTS, instance.instance_id)
    # One row per page and one POST at a time: the page's first POST is the row's rate line.
    one_by_one = settings(page_size=1, revio_concurrency_per_page=1, **SHORT_LEASE)

    async with harness.context(**one_by_one) as ctx:
        await fill_queues(ctx, instance)
        row = await case_row(harness, case)
        queue_row_ids = [
            queue_row["Id"]
            for queue_row in await harness.charge_queue_rows("m2m")
            if queue_row["QueueId"] == case.queue_id
        ]
        harness.simulator.lose_next_answers(1)
        await run_page(ctx, instance, case.queue_id, queue_row_ids.index(row["Id"]) + 1)
        row_after_first_attempt = await case_row(harness, case)
        lines_after_first_attempt = row_lines(await harness.ledger(), row)
        await harness.run_until_idle(ctx)

    final_row = await case_row(harness, case)
    lines = row_lines(await harness.ledger(), row)
    lost_charge_id = harness.simulator.charges[0]["charge_id"]
    assert sorted(lines) == ["overage", "rate", "sms"]
    assert not row_after_first_attempt["IsProcessed"]
    assert lines_after_first_attempt["rate"]["state"] == "sending"
    assert lines_after_first_attempt["overage"]["state"] == "created"
    assert lines_after_first_attempt["sms"]["state"] == "created"
    assert final_row["IsProcessed"]
    assert not final_row["HasErrors"]
    assert lines["rate"]["charge_id"] == lost_charge_id
    assert final_row["ChargeId"] == lost_charge_id
    assert final_row["SmsChargeId"] == lines["sms"]["charge_id"]
    assert lines["overage"]["charge_id"] not in (final_row["ChargeId"], final_row["SmsChargeId"])
    assert duplicate_charges(harness) == []


# In the replaced functions a crash between creating and recording a charge duplicated it.


async def test_crash_after_post_creates_no_duplicate(sqlite_harness: Harness) -> None:
    """A line cut off during its POST is settled by the restarted daemon, never sent again."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_HALF_CENT_AMOUNTS, instance.instance_id)

    # Cancelling the handler stops it where a killed process stops: the line stays
    # `sending`, and the simulator, which finishes a request whose client went away,
    # stores the charge. The short lease lets the restarted daemon take the line over.
    async with harness.context(**settings(revio_concurrency_per_page=1, lease_s=1)) as ctx:
        await fill_queues(ctx, instance)
        simulator.latency_s = 0.3
        crashing = asyncio.create_task(run_page(ctx, instance, case.queue_id))
        post_arrived = await wait_until(lambda: post_count(harness) >= 1, timeout_s=5)
        crashing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await crashing
        charge_stored = await wait_until(lambda: len(simulator.charges) >= 1, timeout_s=5)
        simulator.latency_s = 0.0

    async with harness.context(**settings()) as ctx:
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    stored_in_crash = simulator.charges[0]["charge_id"]
    holder = next(line for line in ledger if line["charge_id"] == stored_in_crash)
    assert post_arrived
    assert charge_stored
    assert holder["state"] == "created"
    assert holder["send_count"] == 1
    assert post_count(harness) == len(simulator.charges)
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []


# The replaced functions sent a message for queue 0 for a comm group without a winner.


async def test_comm_group_without_winner_sends_no_queue_zero(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = next(item for item in sample.instances if item.comm_groups_without_winner)
    async with harness.context(**settings()) as ctx:
        await fill_queues(ctx, instance)
        page_messages = [attributes(message) for message in await receive_all(ctx, "create")]
        dead_letters = await harness.dead_letters(ctx)

    queue_ids = sorted(int(message["QueueId"]) for message in page_messages)
    rows = await harness.charge_queue_rows("mobility")
    assert queue_ids == sorted(instance.winning_queue_ids)
    assert 0 not in queue_ids
    assert {row["QueueId"] for row in rows} == set(instance.winning_queue_ids)
    assert dead_letters == []


# The replaced functions logged a failed summary email and forgot it.


async def test_failed_summary_email_is_retried(sqlite_harness: Harness) -> None:
    """SES rejects the summary from an unverified sender, and it arrives once verified."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    sender = f"{unique_name()}@example.org"

    async with harness.context(**settings(email_from=sender)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        async with running_daemon(ctx) as daemon:
            rejected = await wait_until(lambda: outcome_count(daemon, "check", "retry") >= 1)
            emails_while_rejected = len(harness.emails())
            await ctx.aws.ses.verify_email_identity(EmailAddress=sender)
            await wait_until_idle(harness, ctx, daemon)

    assert rejected
    assert emails_while_rejected == 0
    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id


# The replaced functions gave a device without a known carrier dates in year 1.


async def test_unknown_carrier_uses_default_dates(sqlite_harness: Harness) -> None:
    """The rule of any other carrier applies: the period start plus one day to the period end."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_UNKNOWN_CARRIER, instance.instance_id)
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)
        charge_list = charge_list_rows(await harness.read_object(ctx, f"{case.queue_id}.txt"))

    row = await case_row(harness, case)
    # The expected dates are those of the sample's billing period.
    period = (PERIOD_START.date(), PERIOD_END.date())
    start, end = date(2026, 11, 2), date(2026, 11, 30)
    if row["IsBillInAdvance"]:
        start, end = date(2026, 12, 2), date(2026, 12, 31)
    service_id = own_service_id(harness, instance.rev_customer_id, case.number)
    charges = charges_of_service(harness, service_id)
    listed = next(item for item in charge_list if item["MSISDN"] == row["MSISDN"])
    assert period == (date(2026, 11, 1), date(2026, 11, 30))
    assert charges != []
    assert {charge["start_date"] for charge in charges} == {start}
    assert {charge["end_date"] for charge in charges} == {end}
    assert listed["BillingPeriodStart"] == f"{start.year}-{start.month}-{start.day}"
    assert listed["BillingPeriodEnd"] == f"{end.year}-{end.month}-{end.day}"


# The replaced functions only logged a charge whose Rev.io product was not set up.


async def test_missing_product_is_row_error(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_OVERAGE_PRODUCT_MISSING, instance.instance_id)
    reason = "Rev.io product for overage charges is not set up"
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)
        charge_list = charge_list_rows(await harness.read_object(ctx, f"{case.queue_id}.txt"))

    row = await case_row(harness, case)
    lines = row_lines(await harness.ledger(), row)
    listed = next(item for item in charge_list if item["MSISDN"] == row["MSISDN"])
    assert row["IsProcessed"]
    assert row["HasErrors"]
    assert reason in row["ErrorMessage"]
    assert lines["overage"]["state"] == "failed"
    assert lines["rate"]["state"] == "created"
    assert row["ChargeId"] == lines["rate"]["charge_id"]
    assert listed["IsSuccessful"] == "False"
    assert reason in listed["ErrorMessage"]


# The replaced functions looked services up in the whole Rev.io account.


async def test_service_lookup_stays_within_customer(sqlite_harness: Harness) -> None:
    """A number also active under another Rev.io customer is charged to the instance's own."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance, other = sample.instances[0], sample.instances[1]
    case = find_case(sample, CASE_HALF_CENT_AMOUNTS, instance.instance_id)
    own_service = own_service_id(harness, instance.rev_customer_id, case.number)
    # Added last, so it has the highest service id of the number in the account.
    other_service = simulator.add_service(
        customer_id=other.rev_customer_id, number=case.number, activated_date=date(2020, 1, 1)
    )
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    row = await case_row(harness, case)
    own_charges = charges_of_service(harness, own_service)
    assert other_service > own_service
    assert charges_of_service(harness, other_service) == []
    assert len(own_charges) == 3
    assert {charge["customer_id"] for charge in own_charges} == {instance.rev_customer_id}
    assert row["IsProcessed"]
    assert not row["HasErrors"]


# In the replaced functions a retried page 1 sent all other pages again.


async def test_page_one_fans_out_once(sqlite_harness: Harness) -> None:
    """Page 1 run four times, two of them at once, sends pages 2..N and the first check once."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    queue_id = instance.winning_queue_ids[0]
    async with harness.context(**settings(page_size=1)) as ctx:
        await fill_queues(ctx, instance)
        # Phase 1's own page-1 messages are not part of the count.
        phase_one_pages = await receive_all(ctx, "create")
        await run_page(ctx, instance, queue_id)
        await run_page(ctx, instance, queue_id)
        await asyncio.gather(run_page(ctx, instance, queue_id), run_page(ctx, instance, queue_id))
        sent_pages = [attributes(message) for message in await receive_all(ctx, "create")]
        sent_checks = [attributes(message) for message in await receive_all(ctx, "check")]

    row_count = len(
        [row for row in await harness.charge_queue_rows("m2m") if row["QueueId"] == queue_id]
    )
    pages = Counter(
        int(message["PageNumber"]) for message in sent_pages if message["QueueId"] == str(queue_id)
    )
    assert len(phase_one_pages) == len(instance.winning_queue_ids)
    assert row_count >= 2
    assert pages == Counter(range(2, row_count + 1))
    assert len(sent_checks) == 1
