//! The kernel side of ckpt-watch: BPF iterators that write one record per open file
//! (`iter/task_file`) and per file-backed mapping (`iter/task_vma`) of every task, plus one
//! record of member functions per distinct ops table, and one record per process
//! (`iter/task`). Struct offsets arrive from user space as `.rodata` (read from the running
//! kernel's BTF); nothing here knows a kernel's layout.
#![no_std]
#![feature(asm_experimental_arch)]
#![no_main]

mod events;
mod file_facts;
mod kread;
mod task;
mod task_file;
mod task_vma;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
