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
  %tj.counter.at = add nuw i64 ADDR, %tj.copy.at
  %tj.counter = inttoptr i64 %tj.counter.at to ptr
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
  %tj.counter.at9 = add nuw i64 ADDR, %tj.copy.at8
  %tj.counter10 = inttoptr i64 %tj.counter.at9 to ptr
  %tj.count11 = load atomic i64, ptr %tj.counter10 unordered, align 8
  %tj.count112 = add i64 %tj.count11, 1
  store atomic i64 %tj.count112, ptr %tj.counter10 unordered, align 8
  %tj.tp13 = call ptr @llvm.thread.pointer()
  %tj.tp.int14 = ptrtoint ptr %tj.tp13 to i64
  %tj.cpu.at15 = add i64 %tj.tp.int14, 8
  %tj.cpu.ptr16 = inttoptr i64 %tj.cpu.at15 to ptr
  %tj.cpu17 = load atomic i32, ptr %tj.cpu.ptr16 unordered, align 4
  %tj.cpu6418 = zext i32 %tj.cpu17 to i64
  %tj.copy19 = and i64 %tj.cpu6418, 3
  %tj.copy.at20 = shl i64 %tj.copy19, 7
  %tj.counter.at21 = add nuw i64 ADDR, %tj.copy.at20
  %tj.counter22 = inttoptr i64 %tj.counter.at21 to ptr
  %4 = atomicrmw add ptr %tj.counter22, i64 1 monotonic, align 8
  %tj.count123 = add i64 %4, 1
  %tj.guard.record = icmp ule i64 %tj.count123, 4096
  br i1 %tj.guard.record, label %tj.guard.missed, label %tj.guard.call

tj.guard.missed:                                  ; preds = %general
  %tj.guard.arg = zext i32 %2 to i64
  %tj.tp24 = call ptr @llvm.thread.pointer()
  %tj.tp.int25 = ptrtoint ptr %tj.tp24 to i64
  %tj.cpu.at26 = add i64 %tj.tp.int25, 8
  %tj.cpu.ptr27 = inttoptr i64 %tj.cpu.at26 to ptr
  %tj.cpu28 = load atomic i32, ptr %tj.cpu.ptr27 unordered, align 4
  %tj.cpu6429 = zext i32 %tj.cpu28 to i64
  %tj.copy30 = and i64 %tj.cpu6429, 3
  %tj.copy.at31 = shl i64 %tj.copy30, 7
  %tj.counter.at32 = add nuw i64 ADDR, %tj.copy.at31
  %tj.counter33 = inttoptr i64 %tj.counter.at32 to ptr
  call void inttoptr (i64 ADDR to ptr)(ptr %tj.counter33, i64 %tj.guard.arg)
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
