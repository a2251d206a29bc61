"""The actions a task can name, one module each (see labctl/actions/base.py)."""

from __future__ import annotations

from labctl.actions.base import Action
from labctl.actions.command import CommandAction, ShellAction
from labctl.actions.driver import DriverAction
from labctl.actions.fetch import FetchAction
from labctl.actions.files import CopyAction, FileAction, TemplateAction
from labctl.actions.get_url import GetUrlAction
from labctl.actions.git import GitAction
from labctl.actions.kmod import KmodAction
from labctl.actions.lineinfile import LineinfileAction
from labctl.actions.modprobe import ModprobeAction
from labctl.actions.netmap import NetmapAction
from labctl.actions.packages import PackagesAction
from labctl.actions.process import ProcessAction
from labctl.actions.qdisc import QdiscAction
from labctl.actions.service import ServiceAction, SystemdAction
from labctl.actions.source import SourceAction
from labctl.actions.stat import StatAction
from labctl.actions.sysctl import SysctlAction
from labctl.actions.unarchive import UnarchiveAction
from labctl.actions.wait_for import WaitForAction

ACTIONS: dict[str, type[Action]] = {
    a.name: a
    for a in (
        CommandAction,
        ShellAction,
        FileAction,
        CopyAction,
        TemplateAction,
        PackagesAction,
        SysctlAction,
        SourceAction,
        ProcessAction,
        QdiscAction,
        KmodAction,
        DriverAction,
        NetmapAction,
        ModprobeAction,
        StatAction,
        LineinfileAction,
        WaitForAction,
        FetchAction,
        GetUrlAction,
        UnarchiveAction,
        GitAction,
        ServiceAction,
        SystemdAction,
    )
}
