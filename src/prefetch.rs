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

/// Leave to give write hints: there is one only on CPUs that have the
/// instruction (x86-64's PREFETCHW, CPUID PRFCHW: AMD's CPUs of this
/// century and Intel's since Broadwell). It is not in the x86-64 baseline,
/// so it is looked up once, by [`WriteHint::get`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteHint(());

impl WriteHint {
    /// `Some` where the CPU has the instruction.
    #[allow(unsafe_code, unused_unsafe)]
    pub(crate) fn get() -> Option<WriteHint> {
        static HINT: std::sync::OnceLock<Option<WriteHint>> = std::sync::OnceLock::new();
        *HINT.get_or_init(|| {
            // SAFETY: CPUID is in the x86-64 baseline, and leaf 0x8000_0001
            // is read only where leaf 0x8000_0000 says it exists. (`__cpuid`
            // is a safe function in newer Rust, unsafe in older.)
            #[cfg(target_arch = "x86_64")]
            let has = unsafe {
                std::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
                    && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
            };
            #[cfg(not(target_arch = "x86_64"))]
            let has = false;
            has.then_some(WriteHint(()))
        })
    }

    /// Fetches the cache line holding `addr` for writing: this CPU takes it
    /// over from any other that holds it, so that a store to it does not
    /// wait for that.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub(crate) fn write(self, addr: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch reads and writes nothing and cannot fault,
        // whatever the address; a `WriteHint` exists only where the CPU has
        // the instruction.
        unsafe {
            std::arch::asm!(
                "prefetchw [{addr}]",
                addr = in(reg) addr,
                options(nostack, readonly, preserves_flags)
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_to_any_address_do_not_fault() {
        let hint = WriteHint::get();
        let bytes = [7u8; 256];
        let start = bytes.as_ptr() as usize;
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
            if let Some(hint) = hint {
                hint.write(addr);
            }
        }
        // Reached only if no hint faulted (a fault ends the test binary).
        assert_eq!(std::hint::black_box(bytes), [7u8; 256]);
    }

    #[test]
    fn the_write_hint_is_found_where_the_cpu_reports_it() {
        #[cfg(target_arch = "x86_64")]
        {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            if let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags")) {
                let reported = flags.split_whitespace().any(|f| f == "3dnowprefetch");
                assert_eq!(
                    WriteHint::get().is_some(),
                    reported,
                    "CPUID against /proc/cpuinfo"
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert!(WriteHint::get().is_none());
    }
}
