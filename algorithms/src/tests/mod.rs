//! The crate's tests, one module per algorithm plus the decision records
//! and the simulations' plumbing. The randomized safety tests
//! (`*::safety_*`) run the schedules of `crate::sim`.

mod decisions;
mod ffsplit;
mod lms;
mod sim;
mod test_algo;
mod two_node_lms;
pub(crate) mod util;
