//! Which of a batch's changed files a service's own validator reads.
//!
//! `nginx -t` and `php-fpm -t` cost more than linearly in what they read: for 10,000 accounts,
//! nginx compiles 20,000 location regexes (3.9 s of its 4.4 s here) and php-fpm looks up each
//! pool's user in an `/etc/passwd` as long as the pools (13.5 s). Up to [`FULL_CHECK_MAX`]
//! files the validator reads every one. Above, it reads the first and the last file of each
//! *shape* (the directives and how they nest, or the section headers and keys, in order:
//! [`crate::render::shape`]), and every file is checked by our own rules (its shape, and what
//! the service would look up for it: a pool's user and group). Every value in such a file
//! comes from a validated account (user name, domains, limits) or from the layout, so two
//! files of one shape differ only in values that the domain rules and those checks cover. A
//! file the rules cannot vouch for (a server block that loads a certificate) is always read.

use std::collections::BTreeMap;

/// Up to this many changed files of one service, its validator reads every one.
pub const FULL_CHECK_MAX: usize = 100;

/// The indexes of the files the validator reads, in order, given each file's shape (`None`:
/// the file is always read).
pub fn to_read<S: Ord>(shapes: &[Option<S>]) -> Vec<usize> {
    if shapes.len() <= FULL_CHECK_MAX {
        return (0..shapes.len()).collect();
    }
    let mut ends: BTreeMap<&S, (usize, usize)> = BTreeMap::new();
    let mut read = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        match shape {
            None => read.push(i),
            Some(shape) => {
                ends.entry(shape)
                    .and_modify(|(_, last)| *last = i)
                    .or_insert((i, i));
            }
        }
    }
    read.extend(ends.values().flat_map(|(first, last)| [*first, *last]));
    read.sort_unstable();
    read.dedup();
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_batch_is_read_whole_and_a_large_one_by_shape() {
        let small: Vec<Option<u8>> = vec![Some(1); FULL_CHECK_MAX];
        assert_eq!(to_read(&small), (0..FULL_CHECK_MAX).collect::<Vec<_>>());
        let mut large: Vec<Option<u8>> = vec![Some(1); 300];
        large[40] = Some(2);
        large[200] = Some(2);
        large[120] = None;
        assert_eq!(to_read(&large), [0, 40, 120, 200, 299]);
    }
}
