"""Drive `cordon mcp` with the official MCP Python SDK (PyPI `mcp`, pinned in
peers/mcp-client) over stdio, and print a JSON transcript of every exchange
on stdout for tests/runner/mcp.rs to check. This script asserts nothing: it
only reports what the client saw.

usage: mcp_drive.py CORDON_BINARY HOME REPORT
The server inherits this process's environment (AWS endpoint, GitHub URL,
CORDON_ASSISTANT_SECRET, and the variable LEAK_ENV that holds a leaked key).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def dump(result):
    """A tool result as plain JSON (snake_case fields of the 2.x SDK)."""
    text = "\n".join(getattr(c, "text", "") for c in (result.content or []))
    return {
        "is_error": bool(result.is_error),
        "text": text,
        "structured": result.structured_content,
    }


async def main():
    binary, home, report = sys.argv[1], sys.argv[2], sys.argv[3]
    params = StdioServerParameters(
        command=binary, args=["--home", home, "mcp"], env=dict(os.environ)
    )
    out = {"calls": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["server"] = {
                "name": init.server_info.name,
                "instructions": init.instructions,
            }
            tools = await session.list_tools()
            out["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in tools.tools
            ]

            async def call(name, args):
                entry = {"tool": name, "args": args}
                try:
                    entry.update(dump(await session.call_tool(name, args)))
                except Exception as e:  # noqa: BLE001 - reported, not judged
                    entry.update({"exception": f"{type(e).__name__}: {e}"})
                out["calls"].append(entry)
                return entry

            await call("classify", {"file": report})
            proposed = await call("plan", {"report": report, "reason": "leak found by the assistant"})
            plan = (proposed.get("structured") or {}).get("plan")
            out["plan"] = plan
            await call("approve", {"plan": plan or ""})
            await call("apply", {"plan": plan or "", "report": report})
            await call("apply", {"plan": plan or "", "report_env": "LEAK_ENV"})
            await call("pending", {})
            await call(
                "policy_explain",
                {"action": "aws:disable-access-key", "target": "aws:access-key/AKIAEXAMPLE"},
            )
            # A secret pasted into an argument is refused, never recorded.
            await call("classify", {"env": os.environ.get("LEAK_TOKEN", "")})
    print(json.dumps(out))


asyncio.run(main())
