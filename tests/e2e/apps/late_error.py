"""A tiny real entry point for the error-protocol e2e tests: ``python late_error.py MODE``.

Every mode goes through :func:`lepton_hpc.comm.run_app`, as the application's entry points do:

* ``ok``: every rank meets in a barrier and exits 0.
* ``all-user``: every rank raises a UserError outside ``agree``.
* ``all-user-staggered``: the same, rank r after 0.3·r seconds (within the agreement's wait).
* ``one-user``: rank 1 raises a UserError outside ``agree``; the others wait in a barrier.
* ``one-bug``: rank 1 raises a KeyError (a bug); the others wait in a barrier.
* ``agreed``: a UserError on the last rank inside ``agree`` (a JobError on every rank).
"""

import sys
import time

from lepton_hpc import comm as C
from lepton_hpc.errors import UserError


def main_for(mode: str):
    def main(comm) -> int:
        if mode == "all-user-staggered":
            time.sleep(0.3 * comm.rank)
        if mode.startswith("all-user"):
            raise UserError(f"the setting x=3 is invalid on rank {comm.rank}; use x=1")
        if mode in ("one-user", "one-bug") and comm.rank == 1:
            if mode == "one-user":
                raise UserError("the shard file part1.h5 is truncated; re-run the importer")
            raise KeyError("no_such_key")
        if mode == "agreed":
            def read():
                if comm.rank == comm.size - 1:
                    raise UserError(f"data.path on rank {comm.rank} does not exist; fix the config")
            C.agree(comm, read)
        C.barrier(comm)
        return 0
    return main


if __name__ == "__main__":
    sys.exit(C.run_app(main_for(sys.argv[1])))
