/*
 * Entry point of every guest image.
 *
 * The monitor enters here at privilege level 3 with %rdi = address of the
 * struct ftvm_boot_info and %rsp below the top of RAM.  Nothing may touch
 * .bss before it is cleared (the monitor is not required to zero it), and
 * no C runs before the stack is aligned for the SysV ABI.
 */
    .section .text.start, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    cld
    xor %ebp, %ebp                  /* marks the outermost frame */
    mov %rdi, %r12                  /* keep both: rep stosb below */
    mov %rsp, %r13                  /* clobbers %rdi and %rcx */
    and $-16, %rsp

    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb

    mov %r12, %rdi
    mov %r13, %rsi
    call ftvm_crt_start             /* halts the VM; never returns */
1:  jmp 1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
