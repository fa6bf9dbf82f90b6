; ModuleID = 'job'
source_filename = "sum.ll"

define i64 @sum.tj0(ptr %a, i64 %n) #0 {
entry:
  %tj.tp15 = call ptr @llvm.thread.pointer()
  %tj.tp.int16 = ptrtoint ptr %tj.tp15 to i64
  %tj.cpu.at17 = add i64 %tj.tp.int16, 8
  %tj.cpu.ptr18 = inttoptr i64 %tj.cpu.at17 to ptr
  %tj.cpu19 = load atomic i32, ptr %tj.cpu.ptr18 unordered, align 4
  %tj.cpu6420 = zext i32 %tj.cpu19 to i64
  %tj.copy21 = and i64 %tj.cpu6420, 3
  %tj.copy.at22 = shl i64 %tj.copy21, 7
  %tj.counter23 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at22
  %tj.count24 = load atomic i64, ptr %tj.counter23 unordered, align 8
  %tj.count125 = add i64 %tj.count24, 1
  store atomic i64 %tj.count125, ptr %tj.counter23 unordered, align 8
  %tj.osr.record = alloca { i64, i64, ptr, i64 }, align 8
  %cmp = icmp sgt i64 %n, 0
  br i1 %cmp, label %loop.preheader, label %entry.exit_crit_edge

entry.exit_crit_edge:                             ; preds = %entry
  br label %exit

loop.preheader:                                   ; preds = %entry
  br label %loop

loop:                                             ; preds = %tj.osr.check, %latch.loop_crit_edge, %loop.preheader
  %i = phi i64 [ %i.next, %latch.loop_crit_edge ], [ 0, %loop.preheader ], [ %i.next, %tj.osr.check ]
  %s = phi i64 [ %s.next, %latch.loop_crit_edge ], [ 0, %loop.preheader ], [ %s.next, %tj.osr.check ]
  %p = getelementptr inbounds i64, ptr %a, i64 %i
  %v = load i64, ptr %p, align 8
  %neg = icmp slt i64 %v, 0
  br i1 %neg, label %loop.latch_crit_edge, label %add

loop.latch_crit_edge:                             ; preds = %loop
  br label %latch

add:                                              ; preds = %loop
  %tj.slot26 = load atomic ptr, ptr inttoptr (i64 ADDR to ptr) monotonic, align 8
  %w = call i64 %tj.slot26(i64 %v)
  %s.add = add i64 %s, %w
  br label %latch

latch:                                            ; preds = %loop.latch_crit_edge, %add
  %s.next = phi i64 [ %s, %loop.latch_crit_edge ], [ %s.add, %add ]
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit.loopexit, label %latch.loop_crit_edge

latch.loop_crit_edge:                             ; preds = %latch
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
  %tj.osr.phase = trunc i64 %tj.count1 to i8
  %tj.osr.poll = icmp ult i8 %tj.osr.phase, 16
  br i1 %tj.osr.poll, label %tj.osr.check, label %loop

tj.osr.check:                                     ; preds = %latch.loop_crit_edge
  %tj.slot = load atomic ptr, ptr inttoptr (i64 ADDR to ptr) monotonic, align 8
  %tj.osr.ready = icmp ne ptr %tj.slot, null
  br i1 %tj.osr.ready, label %tj.osr, label %loop

tj.osr:                                           ; preds = %tj.osr.check
  %tj.osr.target = phi ptr [ %tj.slot, %tj.osr.check ]
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
  %tj.osr.field = getelementptr inbounds { i64, i64, ptr, i64 }, ptr %tj.osr.record, i32 0, i32 0
  store i64 %i.next, ptr %tj.osr.field, align 4
  %tj.osr.field12 = getelementptr inbounds { i64, i64, ptr, i64 }, ptr %tj.osr.record, i32 0, i32 1
  store i64 %s.next, ptr %tj.osr.field12, align 4
  %tj.osr.field13 = getelementptr inbounds { i64, i64, ptr, i64 }, ptr %tj.osr.record, i32 0, i32 2
  store ptr %a, ptr %tj.osr.field13, align 8
  %tj.osr.field14 = getelementptr inbounds { i64, i64, ptr, i64 }, ptr %tj.osr.record, i32 0, i32 3
  store i64 %n, ptr %tj.osr.field14, align 4
  %tj.osr.result = call i64 %tj.osr.target(ptr %tj.osr.record)
  ret i64 %tj.osr.result

exit.loopexit:                                    ; preds = %latch
  br label %exit

exit:                                             ; preds = %entry.exit_crit_edge, %exit.loopexit
  %r = phi i64 [ 0, %entry.exit_crit_edge ], [ %s.next, %exit.loopexit ]
  ret i64 %r
}

define i64 @twice.tj0(i64 %x) #0 {
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
  %y = shl i64 %x, 1
  ret i64 %y
}

; Function Attrs: nocallback nofree nosync nounwind willreturn memory(none)
declare ptr @llvm.thread.pointer() #1

define i64 @sum(ptr %0, i64 %1) {
entry:
  %tj.slot = load atomic ptr, ptr inttoptr (i64 ADDR to ptr) monotonic, align 8
  %2 = musttail call i64 %tj.slot(ptr %0, i64 %1)
  ret i64 %2
}

define i64 @twice(i64 %0) {
entry:
  %tj.slot = load atomic ptr, ptr inttoptr (i64 ADDR to ptr) monotonic, align 8
  %1 = musttail call i64 %tj.slot(i64 %0)
  ret i64 %1
}

attributes #0 = { "frame-pointer"="all" }
attributes #1 = { nocallback nofree nosync nounwind willreturn memory(none) }
