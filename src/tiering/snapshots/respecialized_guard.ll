; ModuleID = 'job'
source_filename = "strided.ll"

define i64 @strided.tj3(ptr %a, i64 %n, i32 %stride) {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %wide, label %entry.exit_crit_edge

entry.exit_crit_edge:                             ; preds = %entry
  br label %exit

wide:                                             ; preds = %entry
  %step = sext i32 %stride to i64
  br label %loop

loop:                                             ; preds = %loop.loop_crit_edge, %wide
  %i = phi i64 [ 0, %wide ], [ %i.next, %loop.loop_crit_edge ]
  %s = phi i64 [ 0, %wide ], [ %s.next, %loop.loop_crit_edge ]
  %p = getelementptr inbounds i32, ptr %a, i64 %i
  %v = load i32, ptr %p, align 4
  %w = sext i32 %v to i64
  %s.next = add nsw i64 %s, %w
  %i.next = add nsw i64 %i, %step
  %more = icmp slt i64 %i.next, %n
  br i1 %more, label %loop.loop_crit_edge, label %exit.loopexit

loop.loop_crit_edge:                              ; preds = %loop
  br label %loop

exit.loopexit:                                    ; preds = %loop
  br label %exit

exit:                                             ; preds = %exit.loopexit, %entry.exit_crit_edge
  %res = phi i64 [ 0, %entry.exit_crit_edge ], [ %s.next, %exit.loopexit ]
  ret i64 %res
}

declare i64 @strided(ptr, i64, i32)

define i64 @strided.tj3.guard(ptr %0, i64 %1, i32 %2) {
entry:
  %tj.guard = icmp eq i32 %2, 2
  br i1 %tj.guard, label %specialized, label %general, !prof !0

specialized:                                      ; preds = %entry
  %tj.tp = call ptr @llvm.thread.pointer()
  %tj.tp.int = ptrtoint ptr %tj.tp to i64
  %tj.cpu.at = add i64 %tj.tp.int, 8
  %tj.cpu.ptr = inttoptr i64 %tj.cpu.at to ptr
  %tj.cpu = load atomic i32, ptr %tj.cpu.ptr unordered, align 4
  %tj.cpu64 = zext i32 %tj.cpu to i64
  %tj.copy = and i64 %tj.cpu64, 3
  %tj.copy.at = shl i64 %tj.copy, 7
  %tj.counter = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at
  %tj.count = load atomic i64, ptr %tj.counter unordered, align 8
  %tj.count1 = add i64 %tj.count, 1
  store atomic i64 %tj.count1, ptr %tj.counter unordered, align 8
  %3 = call i64 @strided.tj3(ptr %0, i64 %1, i32 2) #1
  ret i64 %3

general:                                          ; preds = %entry
  %tj.tp1 = call ptr @llvm.thread.pointer()
  %tj.tp.int2 = ptrtoint ptr %tj.tp1 to i64
  %tj.cpu.at3 = add i64 %tj.tp.int2, 8
  %tj.cpu.ptr4 = inttoptr i64 %tj.cpu.at3 to ptr
  %tj.cpu5 = load atomic i32, ptr %tj.cpu.ptr4 unordered, align 4
  %tj.cpu646 = zext i32 %tj.cpu5 to i64
  %tj.copy7 = and i64 %tj.cpu646, 3
  %tj.copy.at8 = shl i64 %tj.copy7, 7
  %tj.counter9 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at8
  %tj.count10 = load atomic i64, ptr %tj.counter9 unordered, align 8
  %tj.count111 = add i64 %tj.count10, 1
  store atomic i64 %tj.count111, ptr %tj.counter9 unordered, align 8
  %tj.tp12 = call ptr @llvm.thread.pointer()
  %tj.tp.int13 = ptrtoint ptr %tj.tp12 to i64
  %tj.cpu.at14 = add i64 %tj.tp.int13, 8
  %tj.cpu.ptr15 = inttoptr i64 %tj.cpu.at14 to ptr
  %tj.cpu16 = load atomic i32, ptr %tj.cpu.ptr15 unordered, align 4
  %tj.cpu6417 = zext i32 %tj.cpu16 to i64
  %tj.copy18 = and i64 %tj.cpu6417, 3
  %tj.copy.at19 = shl i64 %tj.copy18, 7
  %tj.counter20 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at19
  %4 = atomicrmw add ptr %tj.counter20, i64 1 monotonic, align 8
  %tj.count121 = add i64 %4, 1
  %tj.guard.record = icmp ule i64 %tj.count121, 4096
  br i1 %tj.guard.record, label %tj.guard.missed, label %tj.guard.call

tj.guard.missed:                                  ; preds = %general
  %tj.guard.arg = zext i32 %2 to i64
  %tj.tp22 = call ptr @llvm.thread.pointer()
  %tj.tp.int23 = ptrtoint ptr %tj.tp22 to i64
  %tj.cpu.at24 = add i64 %tj.tp.int23, 8
  %tj.cpu.ptr25 = inttoptr i64 %tj.cpu.at24 to ptr
  %tj.cpu26 = load atomic i32, ptr %tj.cpu.ptr25 unordered, align 4
  %tj.cpu6427 = zext i32 %tj.cpu26 to i64
  %tj.copy28 = and i64 %tj.cpu6427, 3
  %tj.copy.at29 = shl i64 %tj.copy28, 7
  %tj.counter30 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at29
  call void inttoptr (i64 ADDR to ptr)(ptr %tj.counter30, i64 %tj.guard.arg)
  br label %tj.guard.call

tj.guard.call:                                    ; preds = %tj.guard.missed, %general
  %5 = tail call i64 @strided.tj3(ptr %0, i64 %1, i32 %2)
  ret i64 %5
}

; Function Attrs: nocallback nofree nosync nounwind willreturn memory(none)
declare ptr @llvm.thread.pointer() #0

attributes #0 = { nocallback nofree nosync nounwind willreturn memory(none) }
attributes #1 = { alwaysinline }

!0 = !{!"branch_weights", i32 4000, i32 96}
