"""The only `ContextVar`s aikit has, and why each is ambient context rather than control.

Control (a retry policy, what to do when the response store cannot be written, where a call's
streamed text goes) is passed explicitly: `aikit.llm.CallPolicy` and `ask`'s arguments. A
context variable stays only for context that belongs to a unit of work as a whole and must
reach code that the unit runs without being rewritten (a user's notebook function). The
architecture test (`tests/test_architecture.py`) fails on any `ContextVar("name")` whose name
is not a key here.
"""

AMBIENT_CONTEXT: dict[str, str] = {
    # aikit.costs._collector
    "aikit_calls": "the calls of one unit of work (an `aikit api` request), whatever threads"
    " and loops the user's function runs them on: the request log sums them",
    # aikit._stream._sink
    "aikit_stream": "the streamed request's sink: a notebook function served on"
    " `POST /{name}/stream` calls `aikit.chat` deep inside without `stream=`; its text goes to"
    " the request's client. Set by `aikit api` only; `stream=` is passed explicitly",
}
