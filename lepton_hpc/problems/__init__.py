"""Distributed problems on the engine loop: glm, mf, matmul (collectives only through comm/reduce)."""
