"""``ground_r1_branch_agent``: the paper's two-phase rollout, G1 first turns per prompt, each continued G2 times.

G2 is a run setting, ``ground_r1.branch_factor`` (:data:`BRANCH_FACTOR_KEY`): every agent-loop worker reads it from
the run's config, which veRL hands whole to each worker on every node.

veRL's worker runs the ``rollout.n`` sessions of a prompt as tasks of one process (``session_id`` 0..n-1, one
``uid``). With G2 > 1 this loop pairs them: session ``s`` with ``s % G2 == 0`` **leads** its
group ``s // G2``; it runs the first assistant turn and its tool call (box and crop) as today, then publishes a
copy of its trajectory state. The ``G2 - 1`` **followers** adopt that copy (token-for-token prompt and response,
masks, rollout log-probs, messages, images including the crop, zoom records, turn counters) and generate on from
there. Every session still returns one output, so reward, GRPO/SRPO and validation stay veRL's, and siblings share
their first box, hence their SRPO scale bin. G1 = n / G2.

Rules (each a test):
- Followers resend the shared prefix under the leader's request id: veRL's sticky routing sends them to the replica
  that holds the prefix in its cache; the follower's first own request reports ``num_cached_tokens``.
- Under ``full_determinism`` the server seeds every request alike: each follower gets its own seed, or siblings would
  repeat the leader's continuation token for token.
- A first turn that ends the trajectory (answers without zooming, or its tool turn overruns the budget) is not
  shared: its followers run their own first turn, as independent rollouts. Copying it would only duplicate one
  sample (identical rewards, doubled weight); an own first turn is a proper sample of the policy.
- A leader that fails fails its followers with the same reason; a follower waits at most ``branch_timeout_s``.
  The published state is dropped once every follower has read it.
- G2 = 1, a row without ``session_id``/``uid`` (veRL's non-v1 worker), a greedy rollout or one not
  sampled with the training settings (validation) run exactly :class:`ZoomToolAgentLoop`.

The shared first turn is trained once per sibling, each time with that sibling's advantage: every trajectory is
a sample whose first turn happens to coincide, and the policy gradient of the group is the sum over its samples;
the first turn's credit is then the sum of its continuations' advantages, which is what the paper's estimator
implies for tokens that led to both outcomes.

Each trajectory records ``extra_fields["branch"]`` (role, group, shared/cached token counts, a digest of its own
continuation); :func:`branch_metrics` turns a step's records into the per-step diagnostics.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.tool_agent_loop import AgentData, AgentState

from verl_ext.tools import TOOL_NAME
from verl_ext.tools.agent_loop import ZoomToolAgentLoop

logger = logging.getLogger(__name__)

BRANCH_AGENT_NAME = "ground_r1_branch_agent"
#: extra_fields key of each trajectory's branch record.
BRANCH_KEY = "branch"
#: The run setting that holds G2 (the recipe's default: 1, independent rollouts; the paper: 2).
BRANCH_FACTOR_KEY = "ground_r1.branch_factor"
DEFAULT_BRANCH_TIMEOUT_S = 600.0
#: Spacing of follower seeds under full_determinism (keeps them clear of the server's replica_rank + seed).
_SEED_STRIDE = 1_000_003
#: A follower counts as served from the prefix cache when this share of its resent prefix was cached.
CACHE_HIT_SHARE = 0.9


class BranchLeaderFailed(RuntimeError):
    """The leader of a branch group failed (or never published): its followers fail with its reason."""


@dataclass
class _Group:
    """One leader and its followers, while the leader's state is pending or unread."""

    published: asyncio.Future
    readers: int = 0


@dataclass
class _Snapshot:
    """A copy of the leader's trajectory right after its first tool turn."""

    source: AgentData
    fields: dict[str, Any]
    prefix_tokens: int
    shared_response: int
    zoom_tool: Any = field(default=None)


#: Groups by (uid, global step, group index); one process-wide table (a worker runs every session of a prompt).
_GROUPS: dict[tuple, _Group] = {}

#: AgentData attributes a follower copies from its leader.
_COPIED = (
    "request_id",
    "prompt_ids",
    "response_mask",
    "response_logprobs",
    "messages",
    "image_data",
    "extra_fields",
    "turn_scores",
    "tool_rewards",
    "user_turns",
    "assistant_turns",
    "mm_processor_output",
    "routed_experts",
)


@register(BRANCH_AGENT_NAME)
class BranchZoomAgentLoop(ZoomToolAgentLoop):
    """The zoom loop with first-turn branching; G2 is the run's ``ground_r1.branch_factor`` (1: exactly
    ``ZoomToolAgentLoop``)."""

    def __init__(self, *args: Any, branch_timeout_s: float = DEFAULT_BRANCH_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.branch_factor = branch_factor_of(self.config)
        if not float(branch_timeout_s) > 0:
            raise ValueError(f"branch_timeout_s must be positive, got {branch_timeout_s!r}")
        self.branch_timeout_s = float(branch_timeout_s)
        self._role = "off"
        self._group_key: tuple | None = None
        self._group: _Group | None = None
        self._published = False
        self._record: dict[str, Any] = {}

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        if self.branch_factor == 1:
            return await super().run(sampling_params, **kwargs)
        self._join(sampling_params, kwargs)  # before the first await: siblings start in session order
        if self._role == "follower" and self.rollout_config.full_determinism:
            seed = int(self.rollout_config.seed) + _SEED_STRIDE * int(kwargs["session_id"])
            sampling_params = {**sampling_params, "seed": seed}
        failure: BaseException | None = None
        try:
            output = await super().run(sampling_params, **kwargs)
        except BaseException as e:
            failure = e
            raise
        finally:
            if self._role == "leader" and not self._published:
                self._publish(None, failure or BranchLeaderFailed("the leader ended before its first tool turn"))
        self._record["tail"] = hashlib.blake2b(
            repr(output.response_ids[self._record["shared_response"] :]).encode(), digest_size=8
        ).hexdigest()
        output.extra_fields[BRANCH_KEY] = dict(self._record)
        return output

    # --- roles -------------------------------------------------------------------------------------------------

    def _join(self, sampling_params: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """Take this session's role and record; followers count themselves in before the leader can publish."""
        session, uid = kwargs.get("session_id"), kwargs.get("uid")
        self._record = {
            "role": "off",
            "uid": str(uid),
            "group": "",
            "shared_response": 0,
            "cached_tokens": -1,
            "prefix_tokens": 0,
        }
        if session is None or uid is None or not self._is_training_sampling(sampling_params):
            return
        session = int(session)
        key = (str(uid), str(kwargs.get("global_steps")), session // self.branch_factor)
        self._group_key = key
        self._record["group"] = f"{uid}/{session // self.branch_factor}"
        if session % self.branch_factor == 0:
            self._role = "leader"
            self._group = _GROUPS[key] = _Group(asyncio.get_running_loop().create_future())
        else:
            group = _GROUPS.get(key)
            if group is None or group.published.done():  # no leader to follow: an independent rollout
                self._role = "independent"
            else:
                self._role, self._group = "follower", group
                group.readers += 1
        self._record["role"] = self._role
        _announce_branching(self.branch_factor)

    def _is_training_sampling(self, sampling_params: dict[str, Any]) -> bool:
        """Sampled with the training settings (validation uses val_kwargs; greedy siblings would be identical)."""
        rollout = self.rollout_config
        temperature = float(sampling_params.get("temperature", 0) or 0)
        return temperature > 0 and (temperature, sampling_params.get("top_p"), sampling_params.get("top_k")) == (
            float(rollout.temperature),
            rollout.top_p,
            rollout.top_k,
        )

    def _publish(self, snapshot: _Snapshot | None, failure: BaseException | None = None) -> None:
        """Hand the followers the leader's state (``None``: they run on their own) or its failure."""
        self._published = True
        group = self._group
        if failure is not None:
            group.published.set_exception(BranchLeaderFailed(f"branch leader failed: {failure!r}"))
        else:
            group.published.set_result(snapshot)
        if group.readers == 0:
            group.published.exception()  # nobody will read it: mark it retrieved
            self._drop(snapshot)

    def _drop(self, snapshot: _Snapshot | None) -> None:
        """Forget the group (only this one: a later step may reuse the key) and release the snapshot's original."""
        if _GROUPS.get(self._group_key) is self._group:
            del _GROUPS[self._group_key]
        if snapshot is not None and snapshot.zoom_tool is not None:
            snapshot.zoom_tool.release_trajectory(snapshot.source)

    def _snapshot(self, agent_data: AgentData) -> _Snapshot:
        fields = {name: getattr(agent_data, name) for name in _COPIED}
        fields["messages"] = [dict(m) for m in agent_data.messages]
        fields["extra_fields"] = copy.deepcopy(agent_data.extra_fields)
        for name in ("prompt_ids", "response_mask", "response_logprobs", "image_data", "turn_scores", "tool_rewards"):
            value = fields[name]
            fields[name] = list(value) if value is not None else None
        holder = AgentData([], [], None, None, None, {}, agent_data.request_id, {})
        zoom_tool = self.tools.get(TOOL_NAME)
        if hasattr(zoom_tool, "share_trajectory"):
            zoom_tool.share_trajectory(agent_data, holder)  # the snapshot holds the original until read
        else:
            zoom_tool = None
        return _Snapshot(holder, fields, len(agent_data.prompt_ids), len(agent_data.response_mask), zoom_tool)

    # --- state-machine hooks ----------------------------------------------------------------------------------

    async def _handle_pending_state(self, agent_data: AgentData, *args: Any, **kwargs: Any) -> AgentState:
        if self._role != "follower":
            return await super()._handle_pending_state(agent_data, *args, **kwargs)
        group = self._group
        try:
            snapshot = await asyncio.wait_for(asyncio.shield(group.published), self.branch_timeout_s)
        except TimeoutError as e:
            self._leave(group)
            raise BranchLeaderFailed(f"no state from the branch leader within {self.branch_timeout_s:g} s") from e
        except BaseException:  # the leader's failure (same reason), or this session cancelled
            self._leave(group)
            raise
        if snapshot is None:  # the leader's first turn ended its trajectory: take our own first turn
            self._leave(group)
            self._role = self._record["role"] = "independent"
            return await super()._handle_pending_state(agent_data, *args, **kwargs)
        self._adopt(agent_data, snapshot)
        self._leave(group)
        return AgentState.GENERATING

    def _leave(self, group: _Group) -> None:
        """One reader fewer; the last one drops the published state (and its hold on the original)."""
        group.readers -= 1
        if group.readers == 0 and group.published.done():
            self._drop(None if group.published.exception() else group.published.result())

    def _adopt(self, agent_data: AgentData, snapshot: _Snapshot) -> None:
        self.agent_data = agent_data
        fields = snapshot.fields
        for name in _COPIED:
            value = fields[name]
            if isinstance(value, list):
                value = [dict(v) for v in value] if name == "messages" else list(value)
            elif name == "extra_fields":
                value = copy.deepcopy(value)
            setattr(agent_data, name, value)
        if snapshot.zoom_tool is not None:
            snapshot.zoom_tool.share_trajectory(snapshot.source, agent_data)
        self._record.update(prefix_tokens=snapshot.prefix_tokens, shared_response=snapshot.shared_response)
        self.server_manager = _CachedTokensProbe(self.server_manager, self._record)

    async def _handle_generating_state(self, agent_data: AgentData, *args: Any, **kwargs: Any) -> AgentState:
        state = await super()._handle_generating_state(agent_data, *args, **kwargs)
        if self._role == "leader" and not self._published and state != AgentState.PROCESSING_TOOLS:
            self._publish(None)  # answered (or stopped) without a tool call: nothing to share
        return state

    async def _handle_processing_tools_state(self, agent_data: AgentData, *args: Any, **kwargs: Any) -> AgentState:
        state = await super()._handle_processing_tools_state(agent_data, *args, **kwargs)
        if self._role == "leader" and not self._published:
            if state == AgentState.GENERATING:
                snapshot = self._snapshot(agent_data)
                self._record["shared_response"] = snapshot.shared_response
                self._publish(snapshot)
            else:  # the tool turn overran the budget: the trajectory ends here, nothing to share
                self._publish(None)
        return state


class _CachedTokensProbe:
    """The follower's server client, recording ``num_cached_tokens`` of its first own request."""

    def __init__(self, client: Any, record: dict[str, Any]) -> None:
        self._client, self._record, self._seen = client, record, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        output = await self._client.generate(*args, **kwargs)
        if not self._seen:
            self._seen = True
            cached = (getattr(output, "extra_fields", None) or {}).get("num_cached_tokens")
            self._record["cached_tokens"] = int(cached) if isinstance(cached, int) else -1
        return output


def parse_branch_factor(value: Any) -> int:
    """G2 as a positive int (an integer, or its digits as a string in a YAML file)."""
    try:
        factor = int(str(value).strip())
    except ValueError:
        factor = 0
    if factor < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"branch_factor must be a positive integer, got {value!r}")
    return factor


def branch_metrics(rows: Any) -> dict[str, float]:
    """Per-step diagnostics from the trajectories' branch records (``extra_fields["branch"]``).

    ``rows``: the records themselves, or the trajectories' ``extra_fields`` (as the v1 trainer fetches them from
    TransferQueue: a list, or a column with ``tolist``); trajectories without a record are skipped.

    ``branch/branches_per_prompt``: first turns sampled per prompt (leaders and independent rollouts; G1 when
    every first turn zoomed). ``branch/follower_share``: trajectories that continued a shared first turn.
    ``branch/follower_cache_hit_share``: followers whose first request found at least ``CACHE_HIT_SHARE`` of the
    resent prefix in the server's cache (only where the server reports ``num_cached_tokens``).
    ``branch/diverged_share``: groups with followers whose siblings did not all continue identically.
    """
    rows = rows.tolist() if hasattr(rows, "tolist") else list(rows if rows is not None else [])
    records = []
    for row in rows:
        row = getattr(row, "data", row)  # TransferQueue wraps non-tensor values
        if isinstance(row, dict) and isinstance(row.get(BRANCH_KEY), dict):
            row = row[BRANCH_KEY]
        records.append(row)
    rows = [r for r in records if isinstance(r, dict) and r.get("role") not in (None, "off")]
    if not rows:
        return {}
    prompts: dict[str, int] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        prompts.setdefault(r["uid"], 0)
        if r["role"] in ("leader", "independent"):
            prompts[r["uid"]] += 1
        if r["role"] in ("leader", "follower"):
            groups.setdefault(r["group"], []).append(r)
    followers = [r for r in rows if r["role"] == "follower"]
    metrics = {
        "branch/branches_per_prompt": sum(prompts.values()) / len(prompts),
        "branch/follower_share": len(followers) / len(rows),
    }
    reported = [r for r in followers if r.get("cached_tokens", -1) >= 0 and r.get("prefix_tokens", 0) > 0]
    if reported:
        hits = sum(r["cached_tokens"] >= CACHE_HIT_SHARE * r["prefix_tokens"] for r in reported)
        metrics["branch/follower_cache_hit_share"] = hits / len(reported)
    shared = [g for g in groups.values() if any(r["role"] == "follower" for r in g)]
    if shared:
        metrics["branch/diverged_share"] = sum(len({r["tail"] for r in g}) > 1 for g in shared) / len(shared)
    return metrics


def branch_factor_of(config: DictConfig) -> int:
    """The run's G2, ``ground_r1.branch_factor`` (1 when the config has no such key, e.g. veRL's own ppo_trainer)."""
    return parse_branch_factor(OmegaConf.select(config, BRANCH_FACTOR_KEY, default=1))


@functools.cache
def _announce_branching(factor: int) -> None:
    """Say once per worker process that it branches, with which G2, on which Ray node, and whether the plugin loaded:
    on a multi-node cluster every node's agent-loop workers show up in the driver's log."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "none"
    plugin = "loaded" if "verl_ext.plugin" in sys.modules else "not loaded"
    print(
        f"[branching] G2={factor} ({BRANCH_FACTOR_KEY}) pid={os.getpid()} node={node} plugin={plugin}",
        flush=True,
    )


def check_branching(config: DictConfig) -> None:
    """Refuse, before Ray starts, a ``rollout.n`` that is not a multiple of G2 (n = G1 * G2), and an agent-loop
    file entry that still sets ``branch_factor`` (veRL would pass it on unread, and the run would not branch)."""
    factor = branch_factor_of(config)
    n = int(config.actor_rollout_ref.rollout.n)
    if n % factor:
        raise ValueError(
            f"{BRANCH_FACTOR_KEY}={factor} continues each first turn {factor} times: "
            f"actor_rollout_ref.rollout.n={n} must be a multiple of {factor} (n = G1 * G2)"
        )
    path = config.actor_rollout_ref.rollout.agent.get("agent_loop_config_path")
    if not path:
        return
    entries = OmegaConf.load(Path(path))
    if not isinstance(entries, ListConfig):
        raise ValueError(f"{path}: an agent-loop config file is a list of loops")
    for entry in entries:
        if isinstance(entry, DictConfig) and "branch_factor" in entry:
            raise ValueError(
                f"{path}: agent loop {entry.get('name')} sets branch_factor, which is a run setting now: "
                f"remove it there and set {BRANCH_FACTOR_KEY}={entry.branch_factor} (hydra)"
            )
