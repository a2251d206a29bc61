"""What a host is: facts gathered in one round trip (host), its qdiscs' state and counters
(qdisc), each a command and a pure parser."""
