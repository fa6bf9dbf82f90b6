; long mix(long a, long b): a loop in SSA form (phis), as an optimizing
; front end hands it over: 64 rounds of a multiply-xorshift.
define i64 @mix(i64 %a, i64 %b) {
entry:
  br label %loop

loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %h = phi i64 [ %a, %entry ], [ %h2, %loop ]
  %x = xor i64 %h, %b
  %m = mul i64 %x, 6364136223846793005
  %s = lshr i64 %m, 29
  %h2 = xor i64 %m, %s
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, 64
  br i1 %done, label %exit, label %loop

exit:
  ret i64 %h2
}
