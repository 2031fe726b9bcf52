from tests.envs import app_env
from tests.http_server import serve
from ticketgate.app import create_app
from ticketgate.config import load_settings


async def test_join_over_http_on_embedded_store() -> None:
    settings = load_settings(app_env(SERVER_ENVIRONMENT="development"))
    async with serve(create_app(settings)) as client:
        response = await client.post("/api/v1/queue/join", json={"event_id": "evt_1"})
        assert response.status_code == 202
        assert response.json()["position_hint"] == 1
