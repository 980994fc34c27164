//! Whether this process is a rank of an MPI job, from what launchers put in the environment, and
//! the mark a rank leaves there so that processes it starts are not taken for ranks.

/// Rank variables of the launchers: MPICH's Hydra and Slurm's PMI/PMI2 (`PMI_RANK`), Open MPI
/// (`OMPI_COMM_WORLD_RANK`), PMIx launchers (`PMIX_RANK`).
const RANK_VARS: [&str; 3] = ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"];

/// Set by a rank for its descendants (their environment is its): they are not ranks.
pub(crate) const MARK: &str = "MULTIPROC_MPI_RANK";

/// `MULTIPROC_MPI=off` makes a rank ignore MPI: it runs `main` and local pools only.
pub(crate) const SWITCH: &str = "MULTIPROC_MPI";

/// This process' rank, if a launcher started it as one (and not a process a rank started).
pub(crate) fn rank() -> Option<u32> {
    if std::env::var_os(MARK).is_some() || std::env::var_os(SWITCH).is_some_and(|v| v == "off") {
        return None;
    }
    // A multiproc child (a pool worker, the fork server) of a rank: its role runs it.
    if std::env::var_os("MULTIPROC_CHILD").is_some() {
        return None;
    }
    RANK_VARS.iter().find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}
