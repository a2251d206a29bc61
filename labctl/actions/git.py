"""git: a checkout of `repo` at `version` in `dest`, with the host's git (Ansible's git).

The plan reads the checkout (HEAD, the remote's URL, local modifications) and the remote's
refs (`git ls-remote`, read-only) and resolves `version` as Ansible does: HEAD (the
remote's default branch), a branch, a tag (an annotated tag's commit), else a commit sha.
Nothing runs when HEAD is that commit already. Otherwise: clone (absent dest), or fetch
and check out (a branch as a local branch at the remote's commit, a tag or sha detached).
Local modifications fail the task unless `force`, which discards them, like Ansible.
Registered: `before` and `after` (commit shas; None where there is no checkout),
`remote_url_changed`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, ActionResult, Plan, Run, Step, TaskContext
from labctl.remote import ShellScript

_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class GitArgs:
    repo: str
    dest: str
    version: str = "HEAD"
    remote: str = "origin"
    force: bool = False
    depth: int | None = None
    update: bool = True
    clone: bool = True

    def __post_init__(self) -> None:
        if not self.dest.startswith("/"):
            raise ValueError(f"dest {self.dest!r} must be absolute")
        for name in ("repo", "version", "remote"):
            value = getattr(self, name)
            if not value or value.startswith("-"):
                # git would read it as an option
                raise ValueError(f"{name} {value!r} must not be empty or start with '-'")
        if self.depth is not None and self.depth < 1:
            raise ValueError("depth must be a positive integer")


@dataclass(frozen=True)
class Checkout:
    kind: str  # "absent", "repo", "notempty" (a non-empty directory that is no checkout)
    head: str | None = None
    url: str | None = None
    dirty: bool = False


@dataclass(frozen=True)
class Target:
    sha: str  # may be an abbreviated sha (a commit named by the task)
    branch: str | None = None  # check out as this local branch
    tag: str | None = None


def checkout_script(dest: str, remote: str) -> ShellScript:
    d = shlex.quote(dest)
    key = shlex.quote(f"remote.{remote}.url")
    return ShellScript(
        f"if [ -e {d}/.git ]; then echo repo; "
        f'echo "head=$(git -C {d} rev-parse --verify -q HEAD)"; '
        f'echo "url=$(git -C {d} config --get {key})"; '
        f'if [ -n "$(git -C {d} status --porcelain --untracked-files=no)" ]; then '
        "echo dirty=1; fi; "
        f'elif [ -d {d} ] && [ -n "$(ls -A {d})" ]; then echo notempty; '
        "else echo absent; fi"
    )


def parse_checkout(text: str) -> Checkout:
    lines = text.splitlines()
    if not lines or lines[0] != "repo":
        return Checkout(lines[0] if lines else "absent")
    fields = dict(line.partition("=")[::2] for line in lines[1:])
    return Checkout(
        "repo", fields.get("head") or None, fields.get("url") or None, "dirty" in fields
    )


def resolve(version: str, ls_remote: str) -> Target:
    """`version` against `git ls-remote --symref` output, as Ansible's get_remote_head."""
    refs: dict[str, str] = {}
    head_branch = None
    for line in ls_remote.splitlines():
        left, _, ref = line.partition("\t")
        if left.startswith("ref: "):
            if ref == "HEAD":
                head_branch = left[5:].removeprefix("refs/heads/")
        else:
            refs[ref] = left
    if version == "HEAD":
        if "HEAD" not in refs:
            raise ValueError("Could not determine remote revision for HEAD (an empty repository?)")
        return Target(refs["HEAD"], branch=head_branch)
    if f"refs/heads/{version}" in refs:
        return Target(refs[f"refs/heads/{version}"], branch=version)
    if f"refs/tags/{version}" in refs:
        sha = refs.get(f"refs/tags/{version}^{{}}", refs[f"refs/tags/{version}"])
        return Target(sha, tag=version)
    if _SHA.match(version):
        return Target(version)  # a commit: cannot be checked on the remote, as in Ansible
    raise ValueError(f"Could not determine remote revision for {version}")


def checkout_steps(args: GitArgs, target: Target) -> list[Step]:
    d = args.dest
    if target.branch:
        # The local branch at the remote's commit, tracking it (force: even over changes)
        start = f"{args.remote}/{target.branch}"
        return [
            Run(["git", "-C", d, "checkout", "--force", "-B", target.branch, start]),
            Run(["git", "-C", d, "branch", f"--set-upstream-to={start}", target.branch]),
        ]
    return [Run(["git", "-C", d, "checkout", "--force", "--detach", target.sha])]


class GitAction(Action):
    name = "git"
    Args = GitArgs

    def plan(self, ctx: TaskContext, args: GitArgs) -> Plan:
        here = parse_checkout(ctx.conn.run(checkout_script(args.dest, args.remote)).stdout)
        out: dict[str, Any] = {"before": here.head, "after": here.head}
        out["remote_url_changed"] = False
        if here.kind == "notempty":
            raise ValueError(f"Destination {args.dest} exists, is not empty and is not a checkout")
        if here.kind == "absent" and not args.clone:
            return Plan(output=out)
        if here.kind == "repo" and not args.update:
            return Plan(output=out)
        if here.dirty and not args.force:
            raise ValueError(
                f"Local modifications exist in the destination: {args.dest} (force=no)."
            )
        listing = ctx.conn.run(["git", "ls-remote", "--symref", args.repo], check=True)
        target = resolve(args.version, listing.stdout)
        out["after"] = target.sha
        depth = ["--depth", str(args.depth)] if args.depth else []
        if here.kind == "absent":
            clone = ["git", "clone", *depth, "--origin", args.remote]
            if target.branch or target.tag:
                clone += ["--branch", target.branch or target.tag or ""]
            steps: list[Step] = [Run([*clone, "--", args.repo, args.dest], timeout=3600)]
            if not (target.branch or target.tag):
                steps.append(Run(["git", "-C", args.dest, "checkout", "--detach", target.sha]))
            return Plan(steps, [f"clone {args.repo} into {args.dest} at {target.sha}"], output=out)
        url_changed = here.url != args.repo
        on_target = bool(here.head) and (here.head or "").startswith(target.sha)
        if on_target and not here.dirty and not url_changed:
            return Plan(output={**out, "after": here.head})
        steps = []
        changes = []
        if here.dirty:
            steps.append(Run(["git", "-C", args.dest, "reset", "--hard"]))
            changes.append(f"{args.dest}: discard local modifications")
        if url_changed:
            out["remote_url_changed"] = True
            steps.append(Run(["git", "-C", args.dest, "remote", "set-url", args.remote, args.repo]))
            changes.append(f"{args.dest}: remote {args.remote} is now {args.repo}")
        if not on_target:
            refspec = f"+refs/heads/*:refs/remotes/{args.remote}/*"
            fetch = ["git", "-C", args.dest, "fetch", *depth, "--tags", args.remote, refspec]
            steps.append(Run(fetch, timeout=3600))
            steps.extend(checkout_steps(args, target))
            changes.append(f"{args.dest}: {here.head} -> {target.sha} ({args.version})")
        return Plan(steps, changes, output=out)

    def apply(self, ctx: TaskContext, args: GitArgs, plan: Plan) -> ActionResult:
        result = super().apply(ctx, args, plan)
        if result.failed:
            return result
        # `after` as the checkout has it (an abbreviated sha named by the task, resolved)
        head = ctx.conn.run(["git", "-C", args.dest, "rev-parse", "HEAD"], check=True)
        output = {k: v for k, v in plan.output.items()}
        output["after"] = head.stdout.strip()
        return ActionResult(changed=True, changes=result.changes, diff=result.diff, output=output)
