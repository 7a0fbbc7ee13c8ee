"""The one exception type for a mistake the user can fix (MPI-free: kernels and readers raise it).

Raise :class:`UserError` with one sentence that says what is wrong and what to do.
:func:`lepton_hpc.comm.agree` turns it into the same :class:`lepton_hpc.comm.JobError`
on every rank; anywhere else the entry point agrees on it late or aborts (see
:func:`lepton_hpc.comm.run_app`). Any other exception is a bug: its traceback is
printed and the job is aborted. ``OSError`` (a missing file, a full disk) counts as
the user's too; ``KeyError``, ``IndexError`` and plain ``ValueError`` do not.
"""


class UserError(ValueError):
    """A mistake the user can fix: bad config, a missing or malformed file, bad data."""
