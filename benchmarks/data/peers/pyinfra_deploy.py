"""pyinfra's side of benchmarks/peers.py: the peer workload as a pyinfra 3 deploy.

The same steps as peers.yml: the directory, `uname -r`, the template, the fixed file (put
only when its SHA1 differs: pyinfra's own check), `tc qdisc show dev lo`. The two command
outputs come back as the operations' `stdout` once they ran; a last `python.call` writes
them to $PEERS_OUT/<host>.json on the controller. $PEERS_TEMPLATE is the template file.
"""

import io
import json
import os
from pathlib import Path

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, python, server

files.directory(name="work directory", path="/root/peers", present=True)
uname = server.shell(name="kernel release", commands=["uname -r"])
files.template(
    name="a file from a template",
    src=os.environ["PEERS_TEMPLATE"],
    dest="/root/peers/bench.conf",
    inventory_hostname=host.name,
    ansible_host=host.data.ssh_hostname,
)
files.put(
    name="a file with fixed content",
    src=io.BytesIO(b"fixed content\n"),
    dest="/root/peers/fixed.txt",
)
qdisc = server.shell(name="root qdisc of lo", commands=["tc qdisc show dev lo"])


def save(host_name: str, uname_op: OperationMeta, qdisc_op: OperationMeta) -> None:
    outputs = {"uname": uname_op.stdout, "qdisc": qdisc_op.stdout}
    (Path(os.environ["PEERS_OUT"]) / f"{host_name}.json").write_text(json.dumps(outputs))


python.call(name="outputs", function=save, host_name=host.name, uname_op=uname, qdisc_op=qdisc)
