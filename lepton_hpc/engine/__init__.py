"""The engine: one step loop (:mod:`.loop`), the run directory and signals (:mod:`.run`),
kind → problem (:mod:`.registry`) and a whole job (:mod:`.job`)."""
