from __future__ import annotations


async def test_rest_flow(gateway, keys):
    h = {"authorization": f"Bearer {keys.admin}"}
    r = await gateway.http.post("/v1/providers", json={"name": "offline", "type": "test"}, headers=h)
    assert r.status_code == 201, r.text
    provider = r.json()
    r = await gateway.http.post(
        "/v1/agents", json={"name": "a", "provider_id": provider["id"], "model": "test"}, headers=h
    )
    assert r.status_code == 201, r.text
    agent = r.json()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = await gateway.http.post(
        "/v1/tasks",
        json={"name": "t", "response_schema": schema, "prompt_template": "Where is {x}?"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    task = r.json()
    r = await gateway.http.post(
        "/v1/runs",
        json={"agent_id": agent["id"], "task_id": task["id"], "variables": {"x": "Rome"}},
        headers=h,
    )
    assert r.status_code == 201, r.text
    print(r.json())
    assert r.json()["status"] == "succeeded"
