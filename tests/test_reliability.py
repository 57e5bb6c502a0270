import time
from tests.harness import Harness


async def test_probe(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    sample = await h.load_sample(devices=1, seed=3)
    inst = sample.instances[0]
    print("instances", [(i.instance_id, i.portal_type_id, i.winning_queue_ids) for i in sample.instances])
    t = time.monotonic()
    async with h.context() as ctx:
        await h.enqueue(ctx, inst.instance_id)
        d = await h.run_until_idle(ctx)
    print("elapsed", time.monotonic() - t, [c.counts for c in d.consumers])
    rows = await h.charge_queue_rows("m2m")
    print(len(rows), len(h.simulator.charges), h.simulator.request_count)
