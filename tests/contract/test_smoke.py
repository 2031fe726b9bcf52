from ticketgate.waitingroom.model import WaiterState
from ticketgate.waitingroom.store import QueueStore


async def test_join_then_status_reports_position_one(store: QueueStore, event_id: str) -> None:
    joined = await store.join(event_id, "", "")
    status = await store.status(event_id, joined.seq)
    assert status.state is WaiterState.WAITING
    assert status.position == 1
