/* SPDX-License-Identifier: MIT */
/*
 * rdmig QEMU test guest: a 512-byte boot sector (BIOS loads it at 0x7c00).
 *
 * It enables A20, enters 32-bit protected mode with flat segments and then
 * increments byte 0 of every 4 KiB page of [GUEST_START, GUEST_END) forever,
 * page after page. With the guest stopped, every page's byte 0 equals the
 * previous page's except at most one edge where it is one lower (where the
 * loop was), and every other byte of the range is zero: a page lost or stale
 * in migration breaks that (engine/guest.h rdmig_check_incr_image()).
 *
 * The range, 1 MiB .. 101 MiB, must match QH_GUEST_START in
 * tests/lib/qemu_harness.h and the size relay_test.c checks
 * (RDMIG_QEMU_GUEST_MIB); run it with -m 128 or more.
 *
 * With --defsym FILL=1 it is the written guest instead: it writes every
 * dword of [GUEST_START, GUEST_END) once with its own address xor
 * FILL_XOR (so no page is zero and every dword says where it belongs), sets
 * FILL_DONE_ADDR to FILL_MAGIC and halts: a guest whose RAM is all data,
 * then idle, checked byte for byte after migration (qh_check_fill).
 *
 * Built with binutils: as --32, ld -Ttext 0x7c00, objcopy -O binary.
 */
	.set	GUEST_START, 0x00100000
	.ifndef GUEST_END
	.set	GUEST_END, 0x06500000	/* as --defsym GUEST_END=... for a smaller guest */
	.endif
	/* The written guest's constants: tests/lib/qemu_harness.h has the same. */
	.set	FILL_XOR, 0x5a5aa5a5
	.set	FILL_DONE_ADDR, 0x600
	.set	FILL_MAGIC, 0x46494c4c	/* "FILL" */

	.code16
	.text
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movw	$0x7c00, %sp

	inb	$0x92, %al		/* fast A20 gate */
	orb	$0x02, %al
	andb	$0xfe, %al		/* never the reset bit */
	outb	%al, $0x92

	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $pmode

	.code32
pmode:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	$0x7c00, %esp
	.ifdef	FILL
	movl	$GUEST_START, %ebx
fill:
	movl	%ebx, %eax
	xorl	$FILL_XOR, %eax
	movl	%eax, (%ebx)
	addl	$4, %ebx
	cmpl	$GUEST_END, %ebx
	jb	fill
	movl	$FILL_MAGIC, FILL_DONE_ADDR
idle:
	hlt
	jmp	idle
	.endif
pass:
	movl	$GUEST_START, %ebx
page:
	incb	(%ebx)
	addl	$4096, %ebx
	cmpl	$GUEST_END, %ebx
	jb	page
	jmp	pass

	.p2align 3
gdt:
	.quad	0			/* null */
	.quad	0x00cf9a000000ffff	/* 0x08: code, base 0, 4 GiB, 32-bit */
	.quad	0x00cf92000000ffff	/* 0x10: data, base 0, 4 GiB */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

	.org	510
	.byte	0x55, 0xaa
