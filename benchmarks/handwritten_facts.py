"""The peer for benchmarks/facts.py: a plain fabric loop, as one would write it by hand.

Runs one shell script (the same one `labctl facts` runs) on every host of a list, 16 threads,
and prints each host's output as JSON. Uses fabric and paramiko only, nothing of labctl.

usage: handwritten_facts.py SCRIPT_FILE KEY_FILE KNOWN_HOSTS ADDRESS...
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import paramiko
from fabric import Config, Connection


def main() -> None:
    script_file, key, known_hosts, *addresses = sys.argv[1:]
    with open(script_file) as f:
        script = f.read()

    def one(address: str) -> str:
        conn = Connection(
            address,
            user="root",
            config=Config(ssh_config=paramiko.SSHConfig()),
            connect_kwargs={"key_filename": [key], "look_for_keys": False, "allow_agent": False},
        )
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client.load_host_keys(known_hosts)
        try:
            return conn.run(script, hide=True, warn=True, in_stream=False).stdout
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        outputs = dict(zip(addresses, pool.map(one, addresses), strict=True))
    print(json.dumps(outputs))


if __name__ == "__main__":
    main()
