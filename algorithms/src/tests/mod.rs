//! The crate's tests, one module per algorithm, plus the decision records,
//! the differential tests of the fast decisions against their oracles, the
//! interned node lists and the simulations' plumbing. The randomized safety
//! tests (`*::safety_*`) run the schedules of `crate::sim`.

mod decisions;
mod differential;
mod ffsplit;
mod lms;
mod nodeset;
mod restore;
mod sim;
mod test_algo;
mod two_node_lms;
pub(crate) mod util;
