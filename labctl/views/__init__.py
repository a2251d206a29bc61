"""How results look: terminal tables (rich), plots (matplotlib), HTML and JUnit. The only room
that imports a presentation library; everything here takes plain values from the rooms below
(docs/architecture.md)."""
