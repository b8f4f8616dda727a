//! Prefetch hints: a cache line asked for before it is needed, so that the
//! wait for it overlaps other work. A hint reads and writes nothing and
//! cannot fault, whatever the address, so any address may be given; on
//! targets without the instruction a hint does nothing.

/// Fetches the cache line holding `addr` for reading.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn read(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Whether [`write`] hints do anything on this CPU: x86-64's PREFETCHW
/// (CPUID PRFCHW, on AMD's CPUs of this century and Intel's since
/// Broadwell). It is not in the x86-64 baseline, so it is looked up once.
pub(crate) fn writes_hinted() -> bool {
    static HINTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HINTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
                && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Fetches the cache line holding `addr` for writing: this CPU takes it
/// over from any other that holds it, so that a store to it does not wait
/// for that. `hinted` must be [`writes_hinted`] (the caller looks it up
/// once, not once a line).
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn write(addr: usize, hinted: bool) {
    #[cfg(target_arch = "x86_64")]
    if hinted {
        // SAFETY: a prefetch reads and writes nothing and cannot fault,
        // whatever the address; `hinted` says the CPU has the instruction.
        unsafe {
            std::arch::asm!(
                "prefetchw [{addr}]",
                addr = in(reg) addr,
                options(nostack, readonly, preserves_flags)
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, hinted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_to_any_address_neither_fault_nor_change_memory() {
        let hinted = writes_hinted();
        let mut bytes = [7u8; 256];
        let start = bytes.as_mut_ptr() as usize;
        for addr in [
            0,
            1,
            usize::MAX - 63,
            usize::MAX,
            start,
            start + 13,
            start + 4096,
        ] {
            read(addr);
            write(addr, hinted);
        }
        assert!(bytes.iter().all(|&b| b == 7));
    }

    #[test]
    fn the_write_hint_is_found_where_the_cpu_reports_it() {
        #[cfg(target_arch = "x86_64")]
        {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            if let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags")) {
                let reported = flags.split_whitespace().any(|f| f == "3dnowprefetch");
                assert_eq!(writes_hinted(), reported, "CPUID against /proc/cpuinfo");
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert!(!writes_hinted());
    }
}
