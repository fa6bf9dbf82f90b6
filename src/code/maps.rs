//! This process's memory map (`/proc/self/maps`), as far as reclamation
//! needs it: which stack a stack pointer lies in, and which executable
//! pages hold a loaded object's code.

/// One mapping: `[start, end)`, and whether it is readable and executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    pub executable: bool,
    /// The main thread's stack (`[stack]`).
    pub main_stack: bool,
}

/// The mappings, sorted by address, or `None` if the file cannot be read.
pub fn read() -> Option<Vec<Mapping>> {
    let text = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(parse(&text))
}

fn parse(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.as_bytes();
            let main_stack = fields.nth(3) == Some("[stack]");
            Some(Mapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
                readable: perms.first() == Some(&b'r'),
                executable: perms.get(2) == Some(&b'x'),
                main_stack,
            })
        })
        .collect();
    mappings.sort_by_key(|m| m.start);
    mappings
}

/// The end of the readable memory that starts at the mapping holding
/// `address` and continues through adjacent readable mappings: where a
/// stack that holds `address` ends (a stack grows down, so its live part
/// runs from the stack pointer up to its top). `None` if `address` is not
/// in readable memory.
pub fn readable_end(mappings: &[Mapping], address: usize) -> Option<usize> {
    let i = mappings.partition_point(|m| m.end <= address);
    let first = mappings
        .get(i)
        .filter(|m| m.start <= address && m.readable)?;
    let mut end = first.end;
    for m in &mappings[i + 1..] {
        if m.start != end || !m.readable {
            break;
        }
        end = m.end;
    }
    Some(end)
}

/// The end of the main thread's stack, if `address` is in it.
pub fn main_stack_end(mappings: &[Mapping], address: usize) -> Option<usize> {
    let i = mappings.partition_point(|m| m.end <= address);
    let m = mappings
        .get(i)
        .filter(|m| m.start <= address && m.main_stack)?;
    Some(m.end)
}

/// The end of the mapping holding `address`, if it is readable.
pub fn mapping_end(mappings: &[Mapping], address: usize) -> Option<usize> {
    let i = mappings.partition_point(|m| m.end <= address);
    let m = mappings
        .get(i)
        .filter(|m| m.start <= address && m.readable)?;
    Some(m.end)
}

/// The run of adjacent executable mappings around `address`, or `None` if
/// `address` is not executable.
pub fn executable_run(mappings: &[Mapping], address: usize) -> Option<(usize, usize)> {
    let i = mappings.partition_point(|m| m.end <= address);
    let here = mappings
        .get(i)
        .filter(|m| m.start <= address && m.executable)?;
    let (mut start, mut end) = (here.start, here.end);
    for m in mappings[..i].iter().rev() {
        if m.end != start || !m.executable {
            break;
        }
        start = m.start;
    }
    for m in &mappings[i + 1..] {
        if m.start != end || !m.executable {
            break;
        }
        end = m.end;
    }
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
1000-2000 r--p 00000000 00:00 0
2000-3000 r-xp 00000000 00:00 0
3000-4000 r-xp 00000000 00:00 0
5000-6000 rw-p 00000000 00:00 0                          [stack]
6000-7000 rw-p 00000000 00:00 0
7000-8000 ---p 00000000 00:00 0
";

    #[test]
    fn runs_of_executable_mappings_are_joined() {
        let maps = parse(MAPS);
        assert_eq!(executable_run(&maps, 0x2100), Some((0x2000, 0x4000)));
        assert_eq!(executable_run(&maps, 0x3fff), Some((0x2000, 0x4000)));
        assert_eq!(executable_run(&maps, 0x1100), None);
        assert_eq!(executable_run(&maps, 0x4100), None);
    }

    #[test]
    fn a_stack_ends_where_readable_memory_does() {
        let maps = parse(MAPS);
        assert_eq!(readable_end(&maps, 0x5800), Some(0x7000));
        assert_eq!(mapping_end(&maps, 0x5800), Some(0x6000));
        assert_eq!(main_stack_end(&maps, 0x5800), Some(0x6000));
        assert_eq!(main_stack_end(&maps, 0x6800), None);
        assert_eq!(readable_end(&maps, 0x7800), None);
        assert_eq!(readable_end(&maps, 0x4800), None);
    }

    #[test]
    fn this_process_has_a_readable_stack() {
        let local = 0u64;
        let maps = read().expect("/proc/self/maps");
        let at = &local as *const u64 as usize;
        assert!(readable_end(&maps, at).is_some_and(|end| end > at));
        let code = this_process_has_a_readable_stack as fn() as usize;
        assert!(executable_run(&maps, code).is_some());
    }
}
